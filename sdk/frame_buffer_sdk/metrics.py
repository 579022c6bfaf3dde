"""The Prometheus metrics of a processor built on the SDK, declared once.

A processor's /metrics shows these and nothing of the router or the bridge. The
orchestrator counts its own dead letters in the same DEAD_LETTERED (label ``service``).
Each event has one counter: a frame a processor dead-letters is counted in DEAD_LETTERED
only (with its ``processor_id``), not also as an outcome of FRAMES_PROCESSED_OK. The names
these replaced stay as aliases (``V1_ALIASES``, frame_buffer_sdk.metric_aliases).
"""

from __future__ import annotations

import platform
from importlib import metadata

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from frame_buffer_sdk.metric_aliases import Alias, AliasCollector, register, summed, values

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

DEAD_LETTERED = Counter(
    "frame_buffer_dead_lettered_total",
    "Records written to the dead-letter topic, by reason, service and (a processor's) processor_id",
    ["reason", "service", "processor_id"],
)
PROCESSING_SECONDS = Histogram(
    "frame_buffer_processing_seconds",
    "Time spent in a processor's process()",
    ["processor_id"],
    buckets=LATENCY_BUCKETS,
)
END_TO_END_SECONDS = Histogram(
    "frame_buffer_end_to_end_latency_seconds",
    "captured_at to processed_at",
    ["processor_id"],
    buckets=LATENCY_BUCKETS,
)
FRAMES_PROCESSED_OK = Counter(
    "frame_buffer_frames_processed_ok_total",
    "Frames a processor finished and published a result for (its dead letters: frame_buffer_dead_lettered_total)",
    ["processor_id"],
)
OFFSET_GAPS = Counter(
    "frame_buffer_processor_offset_gaps_total",
    "Fetches of a processor's topic whose offsets jumped ahead: fetched again (refetched), or"
    " offsets given up on after the retries (given_up)",
    ["processor_id", "outcome"],
)

BUILD_INFO = Gauge(
    "frame_buffer_build_info",
    "Always 1: the running build, by service (worker, bridge, processor) and versions",
    ["service", "version", "sdk_version", "python", "faust"],
)


def distribution_version(name: str) -> str:
    """The installed version of distribution ``name``, or "" when it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return ""


def set_build_info(service: str, *, version: str | None = None, faust: str = "") -> None:
    """Export ``frame_buffer_build_info`` (value 1) for this process. ``version`` is the service's
    own (a processor: the SDK's); ``faust`` is empty where Faust is not used."""
    sdk_version = distribution_version("frame-buffer-sdk")
    BUILD_INFO.clear()  # one series per process, whatever was set before
    BUILD_INFO.labels(
        service=service,
        version=sdk_version if version is None else version,
        sdk_version=sdk_version,
        python=platform.python_version(),
        faust=faust,
    ).set(1)


def _processed_by_outcome() -> list[tuple[dict[str, str], float]]:
    ok = [({**labels, "outcome": "ok"}, value) for labels, value in values(FRAMES_PROCESSED_OK)]
    lettered = [
        ({"processor_id": labels["processor_id"], "outcome": labels["reason"]}, value)
        for labels, value in values(DEAD_LETTERED)
        if labels["service"] == "processor"
    ]
    return ok + summed(lettered, ("processor_id", "outcome"))


# The processor's deprecated names; the orchestrator's are in core.metrics.
V1_ALIASES = (
    Alias(
        "frame_buffer_frames_processed",
        "counter",
        ("processor_id", "outcome"),
        '`frame_buffer_frames_processed_ok_total` (outcome "ok") and '
        '`frame_buffer_dead_lettered_total{service="processor"}` (outcome: its reason)',
        _processed_by_outcome,
    ),
)


def register_v1_aliases(registry: CollectorRegistry = REGISTRY) -> AliasCollector:
    """Expose the processor's deprecated names (METRICS_V1_ALIASES)."""
    return register(V1_ALIASES, registry)
