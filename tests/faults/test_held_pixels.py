"""Pixels of a held protected frame outlive the capture's TTL while it waits (issue 10, item 10).

The routing agent runs through Faust's test_context() with its sends recorded
(tests/unit/router_fakes.py); the pixels are in the real Redis of the session's dev stack, with
real TTLs. Every processor of the capability is CRITICAL, so a protected frame is held until the
test gives the processor room again.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis

from app.main import WorkerApp, create_worker_app
from core import envelope
from core.levels import Level
from core.settings import Settings
from frame_buffer_sdk.models import FrameEvent
from tests.unit.router_fakes import Sent, ready, view

pytestmark = pytest.mark.integration
CAP = "object_detection"
TTL = 2  # FRAME_TTL_SECONDS: the capture's TTL, and what the router renews to
CRITICAL = [view("det-a", {CAP}, lag=99, level=Level.CRITICAL)]
ROOM = [view("det-a", {CAP}, lag=10)]


@pytest.fixture
async def worker(make_settings: Callable[..., Settings]) -> AsyncIterator[tuple[WorkerApp, Sent, aioredis.Redis]]:
    settings = make_settings(frame_ttl_seconds=TTL, processor_frame_key_prefix="px:")
    sent = Sent()
    built = create_worker_app(settings, sender=sent)
    built.app.finalize()
    built.app.flow_control.resume()
    redis = aioredis.from_url(settings.redis_url)
    yield built, sent, redis
    await redis.aclose()
    await built.orch.close()


def frame(settings: Settings, name: str, *, priority: int = 9, age: float = 0.0, key: str | None = None) -> bytes:
    return (
        FrameEvent(
            frame_id=name,
            camera_id="cam-1",
            captured_at=datetime.now(UTC) - timedelta(seconds=age),
            capabilities=[CAP],
            priority=priority,
            frame_key=key if key is not None else f"px:{settings.app_id}:{name}",
        )
        .model_dump_json()
        .encode()
    )


async def wait_sent(sent: Sent, topic: str, count: int = 1) -> None:
    for _ in range(100):
        if len(sent.values(topic)) >= count:
            return
        await asyncio.sleep(0.05)


async def test_a_held_protected_frame_keeps_its_pixels_past_the_capture_ttl(
    worker: tuple[WorkerApp, Sent, aioredis.Redis],
) -> None:
    built, sent, redis = worker
    s = built.settings
    key = f"px:{s.app_id}:vip"
    await redis.set(key, b"pixels", ex=TTL)
    built.router.update_view(CRITICAL)
    async with built.route_frames.test_context() as agent:
        await agent.put(frame(s, "vip"), key=b"cam-1")
        await asyncio.sleep(TTL * 2 + 0.5)  # held well past the capture's TTL
        assert sent.records == {}
        assert await redis.get(key) == b"pixels"
        assert 0 < await redis.pttl(key) <= TTL * 1000
        built.router.update_view(ROOM)
        await wait_sent(sent, ready(s, "det-a"))
    assert [r["frame_id"] for r in sent.values(ready(s, "det-a"))] == ["vip"]
    assert await redis.get(key) == b"pixels"  # its processor finds them
    assert sent.values(s.dead_letter_topic) == []
    # A round trip when the hold began, then one per quarter TTL: never one per poll.
    assert 2 <= built.routing.pixels.renewals <= 4 * (TTL * 2 + 1) / TTL + 1


async def test_the_envelopes_frames_behind_a_held_frame_keep_their_pixels_too(
    worker: tuple[WorkerApp, Sent, aioredis.Redis],
) -> None:
    built, sent, redis = worker
    s = built.settings
    names = ["e1", "e2", "e3"]
    for name in names:
        await redis.set(f"px:{s.app_id}:{name}", b"pixels", ex=TTL)
    built.router.update_view(CRITICAL)
    async with built.route_frames.test_context() as agent:
        await agent.put(envelope.encode([frame(s, name) for name in names]), key=b"cam-1")
        await asyncio.sleep(TTL * 2 + 0.5)
        built.router.update_view(ROOM)
        await wait_sent(sent, ready(s, "det-a"), 3)
    assert [r["frame_id"] for r in sent.values(ready(s, "det-a"))] == names
    assert [await redis.get(f"px:{s.app_id}:{name}") for name in names] == [b"pixels"] * 3


async def test_a_held_frame_whose_pixels_are_gone_is_dead_lettered_pixels_expired(
    worker: tuple[WorkerApp, Sent, aioredis.Redis],
) -> None:
    built, sent, redis = worker
    s = built.settings
    key = f"px:{s.app_id}:late"
    await redis.set(key, b"pixels", ex=60)
    built.router.update_view(CRITICAL)
    async with built.route_frames.test_context() as agent:
        # Held already past the TTL (in Kafka behind another held frame, say).
        await agent.put(frame(s, "late", age=TTL + 5), key=b"cam-1")
        await asyncio.sleep(0.3)
        await redis.delete(key)  # evicted, or expired before this worker renewed it
        await asyncio.sleep(TTL / 4 + 0.5)
        built.router.update_view(ROOM)
        await wait_sent(sent, s.dead_letter_topic)
    letters = sent.values(s.dead_letter_topic)
    assert [(d["reason"], d["frame_id"], d["capability"]) for d in letters] == [("pixels_expired", "late", CAP)]
    assert key in letters[0]["detail"] and "held" in letters[0]["detail"]
    assert sent.values(ready(s, "det-a")) == []
    counters = built.orch.stats.totals()
    assert counters.dead_lettered == {"pixels_expired": 1} and counters.captured == 1  # the stats balance


async def test_a_shed_able_frame_waiting_to_be_drained_keeps_its_pixels(
    worker: tuple[WorkerApp, Sent, aioredis.Redis],
) -> None:
    built, sent, redis = worker
    s = built.settings
    key = f"px:{s.app_id}:low"
    await redis.set(key, b"pixels", ex=TTL)
    built.router.update_view(CRITICAL)
    async with built.route_frames.test_context() as agent:
        await agent.put(frame(s, "low", priority=0), key=b"cam-1")
    held = sent.records[f"{s.app_id}-waiting"][0]
    async with built.drain_waiting.test_context() as drain:
        await drain.put(json.dumps(held["value"]).encode(), key=b"cam-1")
        await asyncio.sleep(TTL * 2 + 0.5)
        assert await redis.get(key) == b"pixels"
        built.router.update_view(ROOM)
        await wait_sent(sent, ready(s, "det-a"))
    assert [r["frame_id"] for r in sent.values(ready(s, "det-a"))] == ["low"]


async def test_keys_outside_the_frame_key_prefix_and_frames_never_held_cost_no_redis_call(
    worker: tuple[WorkerApp, Sent, aioredis.Redis],
) -> None:
    built, sent, redis = worker
    s = built.settings
    foreign = f"{s.app_id}:not-pixels"
    await redis.set(foreign, b"x", ex=TTL)
    built.router.update_view(ROOM)
    async with built.route_frames.test_context() as agent:
        for n in range(50):
            await agent.put(frame(s, f"f{n}"), key=b"cam-1")
    assert built.routing.pixels.renewals == 0  # the un-held hot path never calls Redis
    built.router.update_view(CRITICAL)
    async with built.route_frames.test_context() as agent:
        await agent.put(frame(s, "forged", key=foreign), key=b"cam-1")
        await asyncio.sleep(TTL + 0.5)
        built.router.update_view(ROOM)
        await wait_sent(sent, ready(s, "det-a"), 51)
    assert await redis.get(foreign) is None  # expired as its writer set: not renewed
    assert built.routing.pixels.renewals == 0
