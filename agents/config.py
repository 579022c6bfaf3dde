"""What each worker piece needs to know, and nothing else.

Built from the orchestrator's Settings at the worker's entrypoint (``app.configs``), so the
agents read small typed objects, never the whole environment: the uvicorn ``Config`` pattern.
Frozen and slotted: the router reads them once per frame, and an attribute of a slotted
dataclass costs what a plain attribute does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from agents.backpressure import Thresholds
from frame_buffer_sdk.kafka_security import KafkaSecurity
from frame_buffer_sdk.names import ProcessorNames


@dataclass(frozen=True, slots=True)
class DedupeConfig:
    """The dedupe index: how long a (frame, capability) pair is remembered, and how many at most."""

    window_seconds: float
    max_pairs: int


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    """The routing agents (route_frames, drain_waiting)."""

    app_id: str
    dead_letter_topic: str
    names: ProcessorNames
    dedupe: DedupeConfig
    # Held frames' pixels are renewed to this TTL, and only under this prefix (None: any key).
    frame_ttl_seconds: int
    frame_key_prefix: str | None


@dataclass(frozen=True, slots=True)
class RegistryConfig:
    """The registry fold: where a registered processor's topic and group are, and how long a
    replica counts as alive."""

    heartbeat_interval: float
    heartbeat_misses: int
    processor_partitions: int
    names: ProcessorNames

    @property
    def replica_window(self) -> timedelta:
        """How long a replica counts as alive after its last heartbeat: as long as the id itself
        stays healthy without one. A SIGKILLed replica never deregisters; this forgets it."""
        return timedelta(seconds=self.heartbeat_interval * self.heartbeat_misses)


@dataclass(frozen=True, slots=True)
class FailoverConfig:
    """Failover: the cluster it re-reads a backlog from and the topic it routes it back into."""

    app_id: str
    bootstrap_servers: str
    kafka_security: KafkaSecurity
    captured_topic: str


@dataclass(frozen=True, slots=True)
class HealthConfig:
    """When a processor's silence or standstill turns into a verdict, and back."""

    heartbeat_interval: float
    heartbeat_misses: int
    stall_timeout: float
    recovery_heartbeats: int


@dataclass(frozen=True, slots=True)
class HealthWatchConfig:
    """The leader's health watch: its lag sampler, verdicts, levels and failover."""

    app_id: str
    bootstrap_servers: str
    kafka_security: KafkaSecurity
    captured_topic: str
    captured_partitions: int
    # Seconds between ticks; the lag sampler samples once a tick.
    lag_sample_interval: float
    router_lag_budget: int
    thresholds: Thresholds
    health: HealthConfig
    failover: FailoverConfig
