"""Every Prometheus metric of the orchestrator's services, declared once (the SDK's are in
frame_buffer_sdk.metrics).

Names marked (v1) are the ones dashboards of the previous frame buffer use; they keep
their meaning. Each process (worker, bridge, processor) serves the default registry on its
own port, so two workers on one host never clash: the port is per process, not per host.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
FRAMES_DROPPED = Counter(
    "frame_buffer_frames_dropped_total",
    "Frames not delivered to any processor, by reason; each also went to the dead-letter topic (v1)",
    ["reason"],
)


# No metric is labelled by camera_id: camera ids are free-form and unbounded, each would be a
# series for ever. Per-camera numbers are in the API (GET /api/v1/frames/stats, /api/v1/cameras/{id},
# the camera grid) instead.
FRAMES_SHED = Counter(
    "frame_buffer_frames_shed_total",
    "Frames shed under saturation, by reason (per camera: the stats API)",
    ["reason"],
)
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
    "frame_buffer_queue_depth", "Commit lag of the processor's consumer group, in frames (v1)", ["processor_id"]
)
PROCESSOR_HEALTHY = Gauge(
    "frame_buffer_processor_healthy", "1 when the processor receives frames, else 0", ["processor_id"]
)
ROUTER_LAG = Gauge("frame_buffer_router_lag", "Commit lag of the routing agents on the captured topic", ["partition"])

# --- bridge -------------------------------------------------------------------------------
BRIDGE_FRAMES = Counter(
    "frame_buffer_bridge_frames_total", "Capture entries mirrored into Kafka, by outcome", ["outcome"]
)
BRIDGE_BATCH_SECONDS = Histogram(
    "frame_buffer_bridge_batch_seconds", "Time from XREADGROUP to XACK of one batch", buckets=LATENCY_BUCKETS
)
STREAM_BACKLOG = Gauge(
    "frame_buffer_stream_backlog", "Capture stream entries not yet read by the bridge group (XINFO GROUPS lag)"
)
STREAM_TRIMMED_UNREAD = Counter(
    "frame_buffer_stream_trimmed_unread",
    "Capture stream entries trimmed (MAXLEN) before any bridge read them, counted by this bridge",
)
STREAM_PENDING = Gauge("frame_buffer_stream_pending", "Capture stream entries read but not yet acknowledged (XPENDING)")
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
    "frame_buffer_capture_fps",
    "Frames per second of all cameras over the last seconds, decoded or published",
    ["stage"],
)
CAPTURE_CONNECTED = Gauge("frame_buffer_capture_connected", "Cameras whose stream is open")
