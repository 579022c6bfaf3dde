"""Capture entries built field for field as detektr's rtsp-capture builds them (hretheum/detektr).

The models are copies of ``services/shared/frame-tracking/src/frame_tracking/metadata.py``
(``FrameMetadata``, ``ProcessingStage``) and ``frame_id.py`` (``FrameID.generate``); the
publishing steps are those of ``services/rtsp-capture/src/main.py``
(``capture_loop_with_publish``: ``model_dump(mode="json")`` plus ``frame_buffer_key``,
``capture_timestamp`` and ``detection_type``) and ``redis_queue.py`` (``publish``: dicts and
lists ``json.dumps``-ed, everything else ``str()``-ed, a ``traceparent`` injected when a span
is current).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class ProcessingStage(BaseModel):
    name: str
    service: str
    status: Literal["pending", "processing", "completed", "failed"] = "pending"
    started_at: datetime = Field(default_factory=datetime.now)
    completed_at: datetime | None = None
    duration_ms: float | None = None
    error: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class FrameMetadata(BaseModel):
    frame_id: str
    timestamp: datetime
    camera_id: str | None = None
    source_url: str | None = None
    resolution: tuple[int, int] | None = None
    format: str | None = None
    size_bytes: int | None = None
    trace_id: str | None = None
    span_id: str | None = None
    parent_span_id: str | None = None
    processing_stages: list[ProcessingStage] = Field(default_factory=list)
    tags: dict[str, Any] = Field(default_factory=dict)


def frame_id(ms: int, camera_id: str, counter: int, source: str = "rtsp-capture") -> str:
    """``FrameID.generate``: ``{timestamp_ms}_{source}_{camera_id}_{counter:04d}_{uuid8}``."""
    return "_".join(
        [str(ms), source.replace("_", "-"), camera_id.replace("_", "-"), f"{counter:04d}", uuid.uuid4().hex[:8]]
    )


def publish_fields(metadata: dict[str, Any], traceparent: str | None = None) -> dict[str, str]:
    """``RedisFrameQueue.publish``: the stream fields of one entry."""
    fields = {k: json.dumps(v) if isinstance(v, dict | list) else str(v) for k, v in metadata.items()}
    if traceparent is not None:
        fields["traceparent"] = traceparent
    return fields


def capture_entry(
    camera_id: str,
    counter: int,
    *,
    source_url: str,
    captured: float,
    timestamp: datetime | None = None,
    resolution: tuple[int, int] = (1920, 1080),
    trace_id: str | None = None,
    span_id: str | None = None,
    traceparent: str | None = None,
    detection_type: str = "object_detection",
    tags: dict[str, Any] | None = None,
) -> tuple[str, dict[str, str]]:
    """(frame_id, stream fields) of one captured frame; ``timestamp`` defaults to a naive ``datetime.now()``."""
    fid = frame_id(int(captured * 1000), camera_id, counter)
    width, height = resolution
    meta = FrameMetadata(
        frame_id=fid,
        timestamp=timestamp or datetime.now(),
        camera_id=camera_id,
        source_url=source_url,
        resolution=resolution,
        format="bgr24",
        size_bytes=width * height * 3,
        trace_id=trace_id,
        span_id=span_id,
        processing_stages=[ProcessingStage(name="capture", service="rtsp-capture", status="completed")],
        tags=tags or {},
    )
    redis_metadata = meta.model_dump(mode="json")
    redis_metadata["frame_buffer_key"] = f"frame:{fid}"
    redis_metadata["capture_timestamp"] = captured
    redis_metadata["detection_type"] = detection_type
    return fid, publish_fields(redis_metadata, traceparent)
