"""A routed frame as the stream entry detektr's processors read. Pure: no I/O.

The fields and their text are those of detektr's ``FrameDistributor.dispatch_to_processor``
(``services/frame-buffer-v2/src/orchestrator/distributor.py``): every value a string, numbers
as decimal text, ``trace_context`` and ``metadata`` as JSON, the pixels' Redis key as
``storage_path`` with ``storage_backend`` ``redis``. A processor built on detektr's
``ProcessorClient`` reads it with XREADGROUP as group ``frame-processors`` and XACKs it.
"""

from __future__ import annotations

import json

from frame_buffer_sdk.models import RoutedFrame

# The group detektr's ProcessorClient reads its stream as (its ``consumer_group`` default).
DETEKTR_GROUP = "frame-processors"
STORAGE_BACKEND = "redis"


def stream_fields(frame: RoutedFrame, traceparent: str | None = None, tracestate: str | None = None) -> dict[str, str]:
    """The entry for ``frame``; ``traceparent`` (the routing span's, from the record) wins over the frame's."""
    parent = traceparent or frame.traceparent
    state = tracestate if traceparent else frame.tracestate
    trace = {k: v for k, v in (("traceparent", parent), ("tracestate", state)) if v}
    return {
        "frame_id": frame.frame_id,
        "camera_id": frame.camera_id,
        "timestamp": frame.captured_at.isoformat(),
        "size_bytes": str(frame.size_bytes or 0),
        "width": str(frame.width or 0),
        "height": str(frame.height or 0),
        "format": frame.format or "",
        "trace_context": json.dumps(trace),
        "metadata": json.dumps(frame.metadata),
        "priority": str(frame.priority),
        "storage_path": frame.frame_key or "",
        "storage_backend": STORAGE_BACKEND,
        # Ours, beyond detektr's: which of the processor's capabilities the frame was routed for.
        "capability": frame.capability,
        "processor_id": frame.processor_id,
        "routed_at": frame.routed_at.isoformat(),
    }
