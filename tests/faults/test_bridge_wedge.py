"""One bad entry must never wedge the bridge: it is dead-lettered and acknowledged, and the
entries behind it are mirrored (real Valkey and Kafka)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from app.configs import bridge_config
from bridge.poison import POISON_REASON
from bridge.service import Bridge
from core.settings import Settings
from tests.faults.bridges import serving
from tests.integration.test_bridge import Records, frame_ids, read_frames, read_topic, valid, wait_until, xadd_all

pytestmark = pytest.mark.integration
MakeSettings = Callable[..., Settings]


def letters_of(records: Records) -> list[dict[str, object]]:
    return [json.loads(r.value) for r in records if r.value is not None]


def nothing_pending(redis: aioredis.Redis, settings: Settings) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return int((await redis.xpending(settings.capture_stream, settings.capture_group))["pending"]) == 0

    return check


async def test_an_entry_of_control_bytes_is_dead_lettered_and_newer_entries_are_mirrored(
    make_settings: MakeSettings, redis_client: aioredis.Redis
) -> None:
    settings = make_settings(bridge_batch_size=200, bridge_block_ms=100, bridge_claim_interval=0.5)
    bad = {f"f{i}": "\x01" * 16_000 for i in range(90)}  # ~1.4 MB; ~8.6 MB as JSON escapes
    good = [valid(f"cam-{n % 5}", n, f"ok-{n}") for n in range(1000)]
    await xadd_all(redis_client, settings.capture_stream, [bad, *good])

    async with serving(Bridge(bridge_config(settings), consumer="wedge")) as bridge:
        await wait_until(lambda: bridge.mirrored_total >= 1000, 60, "1,000 good entries mirrored")
        await wait_until(lambda: bridge.dead_lettered_total >= 1, 10, "the bad entry dead-lettered")
        await wait_until(nothing_pending(redis_client, settings), 10, "nothing pending")

    dead = letters_of(await read_topic(settings, settings.dead_letter_topic, lambda rs: len(rs) >= 1, 30))
    assert [d["reason"] for d in dead] == ["missing_field"]
    assert "(raw truncated)" in str(dead[0]["detail"])
    captured = await read_frames(settings, lambda fs: len(fs) >= 1000)
    assert frame_ids(captured) == {f"ok-{n}": 1 for n in range(1000)}


async def test_an_entry_delivered_too_often_is_dead_lettered_as_poison(
    make_settings: MakeSettings, redis_client: aioredis.Redis
) -> None:
    limit = 3
    settings = make_settings(bridge_block_ms=100, bridge_max_deliveries=limit, bridge_claim_interval=0.5)
    stream, group, consumer = settings.capture_stream, settings.capture_group, "crashing"
    await redis_client.xgroup_create(stream, group, id="0", mkstream=True)
    [poisoned] = await xadd_all(redis_client, stream, [valid("cam-p", 1, "poisoned")])
    # Earlier bridges under this name read it and died each time before acknowledging it.
    await redis_client.xreadgroup(group, consumer, {stream: ">"}, count=1)
    for _ in range(limit):
        await redis_client.xreadgroup(group, consumer, {stream: "0"}, count=1)
    [once] = await xadd_all(redis_client, stream, [valid("cam-p", 2, "read-once")])
    await redis_client.xreadgroup(group, consumer, {stream: ">"}, count=1)
    await xadd_all(redis_client, stream, [valid("cam-q", n, f"new-{n}") for n in range(100)])

    async with serving(Bridge(bridge_config(settings), consumer=consumer)) as bridge:
        await wait_until(lambda: bridge.mirrored_total >= 101, 60, "the other entries mirrored")
        await wait_until(lambda: bridge.dead_lettered_total >= 1, 10, "the poison pill dead-lettered")
        await wait_until(nothing_pending(redis_client, settings), 10, "nothing pending")

    dead = letters_of(await read_topic(settings, settings.dead_letter_topic, lambda rs: len(rs) >= 1, 30))
    assert [(d["reason"], d["stream_id"], d["frame_id"]) for d in dead] == [(POISON_REASON, poisoned, "poisoned")]
    captured = frame_ids(await read_frames(settings, lambda fs: len(fs) >= 101))
    assert "read-once" in captured and "poisoned" not in captured
    assert once != poisoned
