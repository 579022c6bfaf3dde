"""detektr (hretheum/detektr) as our tests meet it: what its rtsp-capture writes, how its processors behave.

Capture entries are built field for field as rtsp-capture builds them. The models are copies
of ``services/shared/frame-tracking/src/frame_tracking/metadata.py`` (``FrameMetadata``,
``ProcessingStage``) and ``frame_id.py`` (``FrameID.generate``); the publishing steps are
those of ``services/rtsp-capture/src/main.py`` (``capture_loop_with_publish``:
``model_dump(mode="json")`` plus ``frame_buffer_key``, ``capture_timestamp`` and
``detection_type``) and ``redis_queue.py`` (``publish``: dicts and lists ``json.dumps``-ed,
everything else ``str()``-ed, a ``traceparent`` injected when a span is current).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from datetime import datetime
from typing import Any, Literal

import aiohttp
import redis.asyncio as aioredis
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


class DetektrProcessor:
    """detektr's ``services/shared/processor_client.py`` ``ProcessorClient``, call for call.

    It registers with ``queue`` and expects 201, heartbeats ``{"processor_id", "status",
    "timestamp"}``, creates group ``frame-processors`` on ``frames:ready:<id>`` without MKSTREAM
    (ignoring any error), reads with XREADGROUP ``count=10, block=1000`` as consumer
    ``<id>``, runs ``process_frame`` on the bytes-keyed fields and XACKs, and deregisters on stop.
    ``process_frame`` here reads the pixels at ``storage_path``, as a detektr processor does.
    """

    def __init__(self, processor_id: str, orchestrator_url: str, capabilities: list[str], redis_url: str) -> None:
        self.processor_id = processor_id
        self.orchestrator_url = orchestrator_url.rstrip("/")
        self.capabilities = capabilities
        self.redis_url = redis_url
        self.consumer_group = "frame-processors"
        self.heartbeat_interval = 0.5  # detektr's default is 30 s; ours is set to 1 s in the tests
        self.received: list[tuple[dict[bytes, bytes], bytes | None]] = []
        self.register_status: int | None = None
        self._tasks: list[Any] = []
        self._running = False

    async def start(self) -> None:
        self._redis = aioredis.from_url(self.redis_url, decode_responses=False)
        self._http = aiohttp.ClientSession()
        self._running = True
        body = {
            "id": self.processor_id,
            "capabilities": self.capabilities,
            "capacity": 10,
            "queue": f"frames:ready:{self.processor_id}",
        }
        async with self._http.post(f"{self.orchestrator_url}/api/v1/processors/register", json=body) as resp:
            self.register_status = resp.status
            self.register_reply = await resp.json()
        if self.register_status != 201:
            return
        self._tasks = [asyncio.create_task(self._heartbeat_loop()), asyncio.create_task(self._consume_loop())]

    async def stop(self) -> int:
        self._running = False
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        async with self._http.delete(f"{self.orchestrator_url}/api/v1/processors/{self.processor_id}") as resp:
            status = resp.status
        await self._redis.aclose()
        await self._http.close()
        return status

    async def _heartbeat_loop(self) -> None:
        while self._running:
            await asyncio.sleep(self.heartbeat_interval)
            body = {"processor_id": self.processor_id, "status": "healthy", "timestamp": time.time()}
            async with self._http.post(f"{self.orchestrator_url}/api/v1/processors/heartbeat", json=body) as resp:
                await resp.read()

    async def _consume_loop(self) -> None:
        stream_key = f"frames:ready:{self.processor_id}"
        with contextlib.suppress(Exception):
            await self._redis.xgroup_create(stream_key, self.consumer_group, id="0")
        while self._running:
            try:
                messages = await self._redis.xreadgroup(
                    self.consumer_group, self.processor_id, {stream_key: ">"}, count=10, block=1000
                )
                for _stream, stream_messages in messages or []:
                    for msg_id, frame_data in stream_messages:
                        await self.process_frame(frame_data)
                        await self._redis.xack(stream_key, self.consumer_group, msg_id)
            except asyncio.CancelledError:
                break
            except Exception:
                await asyncio.sleep(1)

    async def process_frame(self, frame_data: dict[bytes, bytes]) -> None:
        pixels = await self._redis.get(frame_data[b"storage_path"].decode())
        self.received.append((frame_data, pixels))
