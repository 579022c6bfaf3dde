"""What a service process (bridge, relay, capture) needs beside its own config: how it logs,
where its /metrics listens, how its traces are named, and how long it may take to stop.

Built from Settings at the entrypoint (``app.configs.process_config``), like each service's
own config, so ``run_bridge`` and the others never read the environment.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProcessConfig:
    log_level: str
    shutdown_grace_seconds: float
    metrics_host: str
    # 0: no /metrics server.
    metrics_port: int
    # service.name of the process's traces; tracing reads the next two fields too.
    service_name: str
    otel_exporter_otlp_endpoint: str | None = None
    otel_sampling_ratio: float = 1.0
    # Also serve the v1 metric names (METRICS_V1_ALIASES).
    metrics_v1_aliases: bool = True
