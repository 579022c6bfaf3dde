"""The stream entry of one captured frame, in detektr's rtsp-capture form (see README, Capture contract).

The same fields rtsp-capture writes, so the bridge, the relay and detektr's processors read
one contract: ``frame_buffer_key`` is the claim-check key ``frame:{frame_id}``, ``resolution``
is ``[w, h]``, ``capture_timestamp`` epoch seconds beside an ISO ``timestamp`` (ours with its
offset), dicts and lists JSON, everything else ``str()``, absent values the literal ``None``.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from frame_buffer_sdk.telemetry import new_traceparent

SERVICE = "frame-orchestrator-capture"


def frame_buffer_key(frame_id: str) -> str:
    """Where the pixels of ``frame_id`` are stored: rtsp-capture's key, so detektr's readers find them."""
    return f"frame:{frame_id}"


def new_frame_id(captured: float, camera_id: str, counter: int) -> str:
    """rtsp-capture's ``FrameID.generate``: ``{timestamp_ms}_{source}_{camera_id}_{counter:04d}_{uuid8}``."""
    parts = [str(int(captured * 1000)), "capture", camera_id.replace("_", "-"), f"{counter:04d}", uuid.uuid4().hex[:8]]
    return "_".join(parts)


def entry_fields(
    *,
    frame_id: str,
    camera_id: str,
    sequence: int,
    captured: float,
    source_url: str,
    width: int,
    height: int,
    fmt: str,
    size_bytes: int,
    capabilities: tuple[str, ...] = (),
    priority: int | None = None,
    source_time: float | None = None,
) -> dict[str, str]:
    """The stream fields; ``source_url`` must already be redacted (it is stored as given)."""
    at = datetime.fromtimestamp(captured, tz=UTC)
    stage: dict[str, Any] = {
        "name": "capture",
        "service": SERVICE,
        "status": "completed",
        "started_at": at.isoformat(),
        "completed_at": at.isoformat(),
        "duration_ms": None,
        "error": None,
        "metadata": {},
    }
    doc: dict[str, Any] = {
        "frame_id": frame_id,
        "timestamp": at.isoformat(),
        "camera_id": camera_id,
        "source_url": source_url,
        "resolution": [width, height],
        "format": fmt,
        "size_bytes": size_bytes,
        "trace_id": None,
        "span_id": None,
        "parent_span_id": None,
        "processing_stages": [stage],
        "tags": {} if source_time is None else {"source_time": round(source_time, 6)},
        "frame_buffer_key": frame_buffer_key(frame_id),
        "capture_timestamp": captured,
        "sequence": sequence,
    }
    if capabilities:
        doc["detection_type"] = ",".join(capabilities)
    if priority is not None:
        doc["priority"] = priority
    fields = {k: json.dumps(v) if isinstance(v, dict | list) else str(v) for k, v in doc.items()}
    fields["traceparent"] = new_traceparent()
    return fields
