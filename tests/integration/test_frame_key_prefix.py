"""PROCESSOR_FRAME_KEY_PREFIX: a frame naming a Redis key outside it is dead-lettered, never read."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable
from typing import Any

import pytest

from core.lag import processor_watch
from core.settings import Settings
from frame_buffer_sdk import Frame, ProcessorClient
from frame_buffer_sdk.kafka import ensure_topics
from tests.integration.test_processor_sdk import _produce, _read_all, _routed, _wait_until

pytestmark = pytest.mark.integration


async def test_frames_outside_the_key_prefix_are_dead_lettered_unread(
    make_settings: Callable[..., Settings], unique: str
) -> None:
    settings = make_settings(processor_frame_key_prefix=f"{unique}:pixels:")
    pid = "prefix-check"
    topic, _ = processor_watch(settings, pid)
    outputs = [(t, settings.captured_partitions) for t in (settings.results_topic, settings.dead_letter_topic)]
    await ensure_topics(settings.bootstrap_servers, [(topic, 1), *outputs])
    redis = settings.redis.client()
    try:
        await redis.set(f"{unique}:pixels:0", b"\x01" * 8)
        # Another application's key in the same Redis: present, but not the processor's to read.
        await redis.set(f"{unique}:session:admin", b"secret!!")
    finally:
        await redis.aclose()
    inside = _routed(settings, pid, 0, f"{unique}:pixels:0")
    outside = _routed(settings, pid, 1, f"{unique}:session:admin")
    await _produce(
        settings,
        topic,
        [(f.camera_id, f.model_dump_json().encode(), secrets.token_hex(16)) for f in (inside, outside)],
    )

    read: list[bytes] = []

    async def remember(frame: Frame) -> dict[str, Any]:
        read.append(frame.pixels)
        return {"n": len(frame.pixels)}

    client = ProcessorClient(settings, pid, ["checksum"], remember)
    task = asyncio.create_task(client.run(register=False))
    try:
        await _wait_until(
            lambda: client.stats.dead_lettered["frame_key_outside_prefix"] == 1 and bool(read), 30, "both frames"
        )
        letters = await _read_all(settings, settings.dead_letter_topic, expected=1)
        results = await _read_all(settings, settings.results_topic, expected=1)
    finally:
        await asyncio.wait_for(client.stop(), timeout=30)
        await asyncio.wait_for(task, timeout=5)
    assert read == [b"\x01" * 8]
    assert [json.loads(r.value)["frame_id"] for r in results] == [inside.frame_id]
    letter = json.loads(letters[0].value)
    assert letter["reason"] == "frame_key_outside_prefix" and letter["frame_id"] == outside.frame_id
