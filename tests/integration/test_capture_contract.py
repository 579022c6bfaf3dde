"""detektr's rtsp-capture entries through the real bridge: first-class frames, and the camera password nowhere."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app.configs import bridge_config
from bridge.service import Bridge
from core.settings import Settings
from tests.detektr import capture_entry
from tests.integration.test_bridge import Fields, frames_of, read_topic, traceparent_for, wait_until, xadd_all

pytestmark = pytest.mark.integration

PASSWORD = "Zq9-p@ss/w0rd"
URL = f"rtsp://admin:{PASSWORD}@192.168.1.20:554/Streaming/Channels/101"
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)

# Entries rtsp-capture could write that cannot be frames, each still carrying the password.
BAD: list[Callable[[Fields], Fields]] = [
    lambda f: {**f, "camera_id": "None"},
    lambda f: {**f, "resolution": "[1920]"},
    lambda f: {**f, "metadata": "{oops"},
    lambda f: {"payload": json.dumps({"frame_id": "x", "source_url": URL, "timestamp": "soon", "camera_id": "c"})},
    lambda f: {**f, "capture_timestamp": "later"},
]


async def test_no_password_reaches_any_record_log_line_or_span(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(bridge_block_ms=100)
    redis = aioredis.from_url(settings.redis_url)
    frames: dict[str, tuple[str, int]] = {}
    entries: list[Fields] = []
    for n in range(60):
        camera = f"cam_{n % 3}"
        fid, fields = capture_entry(
            camera,
            n,
            source_url=URL,
            captured=T0.timestamp() + n,
            resolution=(640 + n, 360),
            traceparent=traceparent_for(n) if n % 2 else None,
            tags={"fallback": URL},
        )
        frames[fid] = (camera, 640 + n)
        entries.append(dict(fields))
    _, template = capture_entry("cam_9", 99, source_url=URL, captured=T0.timestamp())
    entries.extend(make(dict(template)) for make in BAD)
    try:
        await xadd_all(redis, settings.capture_stream, entries)
    finally:
        await redis.aclose()

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    caplog.set_level(logging.DEBUG)
    bridge = Bridge(bridge_config(settings), consumer="solo", tracer=provider.get_tracer("test"))
    serving = asyncio.create_task(bridge.serve())
    try:
        await wait_until(lambda: bridge.mirrored_total + bridge.dead_lettered_total >= len(entries), 60, "the entries")
    finally:
        await bridge.close()
        await serving
    assert (bridge.mirrored_total, bridge.dead_lettered_total) == (len(frames), len(BAD))

    records = await read_topic(settings, settings.captured_topic, lambda rs: len(frames_of(rs)) >= len(frames))
    captured = frames_of(records)
    dead = await read_topic(settings, settings.dead_letter_topic, lambda rs: len(rs) >= len(BAD))
    assert len(captured) == len(frames) and len(dead) == len(BAD)
    secret = PASSWORD.encode()
    for record in records + dead:
        assert record.value is not None
        assert secret not in record.value and secret not in (record.key or b"")
        assert all(secret not in value for _, value in record.headers)
    for record in captured:
        frame = json.loads(record.value)
        camera, width = frames[frame["frame_id"]]
        assert (frame["camera_id"], frame["width"], frame["height"]) == (camera, width, 360)
        assert frame["frame_key"] == f"frame:{frame['frame_id']}"
        assert frame["metadata"]["source_url"] == "rtsp://admin:***@192.168.1.20:554/Streaming/Channels/101"
        assert frame["metadata"]["tags"]["fallback"] == frame["metadata"]["source_url"]
        assert "trace_id" not in frame["metadata"]
    for record in dead:
        assert record.value is not None
        letter = json.loads(record.value)
        assert letter["raw"], letter  # the evidence is there, redacted
        assert "***@" in json.dumps(letter["raw"])

    spans = exporter.get_finished_spans()
    assert len(spans) == len(frames)
    for span in spans:
        assert PASSWORD not in span.name
        assert all(PASSWORD not in str(value) for value in (span.attributes or {}).values())
    assert caplog.records and all(PASSWORD not in record.getMessage() for record in caplog.records)
