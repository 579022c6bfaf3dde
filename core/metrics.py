"""Every Prometheus metric of the orchestrator's services, declared once (the SDK's are in
frame_buffer_sdk.metrics).

Names follow Prometheus' conventions: a unit word (``_seconds``, ``_frames``, ``_entries``,
``_cameras``) where a value has one, ``_total`` on counters, and one counter per event. A
frame the worker or the bridge dead-letters (shed frames included) is counted once, in
frame_buffer_dead_lettered_total. The names this replaced, which v1 dashboards and our own
files used, stay as aliases that read the new metrics (``V1_ALIASES``; METRICS_V1_ALIASES).
Metrics marked (v1) kept the name and meaning v1 gave them.

Each process (worker, bridge, processor) serves the default registry on its own port, so two
workers on one host never clash: the port is per process, not per host.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from frame_buffer_sdk import metrics as sdk_metrics
from frame_buffer_sdk.metric_aliases import Alias, AliasCollector, Sample, register, renamed, summed, values
from frame_buffer_sdk.metrics import BUILD_INFO, DEAD_LETTERED, LATENCY_BUCKETS, distribution_version, set_build_info

__all__ = ["BUILD_INFO", "DEAD_LETTERED"]  # shared with the SDK, declared there once


def export_build_info(service: str) -> None:
    """``frame_buffer_build_info`` of an orchestrator service (worker, bridge, capture)."""
    set_build_info(
        service, version=distribution_version("frame-buffer-v2"), faust=distribution_version("faust-streaming")
    )


# --- router (Faust worker) -----------------------------------------------------------
FRAMES_ROUTED = Counter(
    "frame_buffer_frames_routed_total", "Frames routed to a processor (v1)", ["processor_id", "capability"]
)
ROUTING_LATENCY = Histogram(
    "frame_buffer_routing_latency_seconds",
    "Time to decide and hand one frame on (v1)",
    buckets=(0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05),
)
# The dead-letter reasons the worker used for frames (not for control events), and those of
# them that were shed: the aliases frame_buffer_frames_dropped/_shed select the worker's
# frame_buffer_dead_lettered_total series by them. Filled by core.deadletter.count_letter.
FRAME_REASONS: set[str] = set()
SHED_REASONS: set[str] = set()


# No metric is labelled by camera_id: camera ids are free-form and unbounded, each would be a
# series for ever. Per-camera numbers are in the API (GET /api/v1/frames/stats, /api/v1/cameras/{id},
# the camera grid) instead.
FRAMES_DEDUPED = Counter(
    "frame_buffer_frames_deduplicated_total", "Re-delivered (frame_id, capability) pairs dropped as duplicates"
)
FRAMES_REROUTED = Counter(
    "frame_buffer_frames_rerouted_total", "Frames moved off an unhealthy processor's backlog", ["from_processor"]
)
BACKPRESSURE_LEVEL = Gauge(
    "frame_buffer_backpressure_level", "0 NORMAL, 1 ELEVATED, 2 HIGH, 3 CRITICAL (v1)", ["processor_id"]
)
QUEUE_DEPTH = Gauge(
    "frame_buffer_queue_depth_frames", "Commit lag of the processor's consumer group, in frames", ["processor_id"]
)
PROCESSOR_HEALTHY = Gauge(
    "frame_buffer_processor_healthy", "1 when the processor receives frames, else 0", ["processor_id"]
)
ROUTER_LAG = Gauge(
    "frame_buffer_router_lag_frames", "Commit lag of the routing agents on the captured topic", ["partition"]
)

# --- bridge -------------------------------------------------------------------------------
BRIDGE_MIRRORED = Counter(
    "frame_buffer_bridge_frames_mirrored_total",
    "Capture entries mirrored into Kafka as frames (its dead letters: frame_buffer_dead_lettered_total)",
)
BRIDGE_BATCH_SECONDS = Histogram(
    "frame_buffer_bridge_batch_seconds", "Time from XREADGROUP to XACK of one batch", buckets=LATENCY_BUCKETS
)
STREAM_BACKLOG = Gauge(
    "frame_buffer_stream_backlog_entries", "Capture stream entries not yet read by the bridge group (XINFO GROUPS lag)"
)
STREAM_TRIMMED_UNREAD = Counter(
    "frame_buffer_stream_trimmed_unread_entries_total",
    "Capture stream entries trimmed (MAXLEN) before any bridge read them, counted by this bridge",
)
STREAM_PENDING = Gauge(
    "frame_buffer_stream_pending_entries", "Capture stream entries read but not yet acknowledged (XPENDING)"
)
BRIDGE_THROTTLE = Gauge("frame_buffer_bridge_throttle", "0 running, 1 slowed, 2 paused by orchestrator backpressure")

# --- capture of real cameras (frame-orchestrator capture --source) --------------------------
# All cameras of the process together; per camera: VideoCapture.stats() and the camera grid API.
CAPTURE_FRAMES_DECODED = Counter(
    "frame_buffer_capture_frames_decoded_total", "Frames decoded from the cameras' streams"
)
CAPTURE_FRAMES_PUBLISHED = Counter(
    "frame_buffer_capture_frames_published_total", "Frames whose pixels and entry were written to Redis"
)
CAPTURE_FRAMES_DROPPED = Counter(
    "frame_buffer_capture_frames_dropped_total",
    "Decoded frames not published, by reason (sampled_out, publish_backlog, encode_failed, redis_error)",
    ["reason"],
)
CAPTURE_RECONNECTS = Counter(
    "frame_buffer_capture_reconnects_total", "Times a camera's stream was lost or could not be opened"
)
CAPTURE_FPS = Gauge(
    "frame_buffer_capture_frames_per_second",
    "Frames per second of all cameras over the last seconds, decoded or published",
    ["stage"],
)
CAPTURE_CONNECTED = Gauge("frame_buffer_capture_connected_cameras", "Cameras whose stream is open")

# --- relay to detektr processors' Redis streams (frame-orchestrator relay) -----------------------
# Labelled by the processor fed: ids of processors registered with a queue, a bounded set. Its
# dead letters are in frame_buffer_dead_lettered_total{service="relay"}.
RELAY_FRAMES = Counter(
    "frame_buffer_relay_frames_relayed_total",
    "Routed frames XADDed into a detektr processor's Redis stream",
    ["processor_id"],
)
RELAY_XADD_ERRORS = Counter(
    "frame_buffer_relay_xadd_errors_total",
    "Batches whose XADD into the processor's stream failed; their records are delivered again",
    ["processor_id"],
)
RELAY_COMMIT_LAG = Gauge(
    "frame_buffer_relay_commit_lag_frames",
    "Records of the processor's topic not yet committed by its group, on the partitions this relay holds",
    ["processor_id"],
)
RELAY_STREAM_UNREAD = Gauge(
    "frame_buffer_relay_stream_unread_entries",
    "Entries of the processor's stream its Redis group (frame-processors) has not read yet",
    ["processor_id"],
)
RELAY_STREAM_PENDING = Gauge(
    "frame_buffer_relay_stream_pending_entries",
    "Entries of the processor's stream read by its Redis group but not acknowledged (XACK)",
    ["processor_id"],
)
RELAY_GAUGES = (RELAY_COMMIT_LAG, RELAY_STREAM_UNREAD, RELAY_STREAM_PENDING)


# --- deprecated names (README: "Deprecated metric names") -------------------------------------


def _worker_letters(reasons: set[str]) -> list[Sample]:
    return summed(
        (
            (labels, value)
            for labels, value in values(DEAD_LETTERED)
            if labels["service"] == "worker" and labels["reason"] in reasons
        ),
        ("reason",),
    )


def _bridge_by_outcome() -> list[Sample]:
    mirrored = sum(value for _, value in values(BRIDGE_MIRRORED))
    lettered = sum(value for labels, value in values(DEAD_LETTERED) if labels["service"] == "bridge")
    return [({"outcome": "mirrored"}, mirrored), ({"outcome": "dead_lettered"}, lettered)]


_WORKER_LETTERS = '`frame_buffer_dead_lettered_total{service="worker"}`'
V1_ALIASES = (
    Alias(
        "frame_buffer_frames_dropped",
        "counter",
        ("reason",),
        f"{_WORKER_LETTERS} (frames; control events are there too)",
        lambda: _worker_letters(FRAME_REASONS),
    ),
    Alias(
        "frame_buffer_frames_shed",
        "counter",
        ("reason",),
        '`frame_buffer_dead_lettered_total{service="worker",reason="shed"}`',
        lambda: _worker_letters(SHED_REASONS),
    ),
    renamed("frame_buffer_queue_depth", QUEUE_DEPTH),
    renamed("frame_buffer_router_lag", ROUTER_LAG),
    Alias(
        "frame_buffer_bridge_frames",
        "counter",
        ("outcome",),
        '`frame_buffer_bridge_frames_mirrored_total` and `frame_buffer_dead_lettered_total{service="bridge"}`',
        _bridge_by_outcome,
    ),
    renamed("frame_buffer_stream_backlog", STREAM_BACKLOG),
    renamed("frame_buffer_stream_trimmed_unread", STREAM_TRIMMED_UNREAD),
    renamed("frame_buffer_stream_pending", STREAM_PENDING),
    renamed("frame_buffer_capture_fps", CAPTURE_FPS),
    renamed("frame_buffer_capture_connected", CAPTURE_CONNECTED),
)


def register_v1_aliases(registry: CollectorRegistry = REGISTRY) -> list[AliasCollector]:
    """Expose the deprecated names of an orchestrator service (METRICS_V1_ALIASES), the SDK's
    included: the worker's registry holds the SDK's metrics too."""
    return [register(V1_ALIASES, registry), sdk_metrics.register_v1_aliases(registry)]
