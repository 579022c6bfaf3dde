"""The bridge's side of a stale CRITICAL level (issue 10): a stalled leader's last CRITICAL does not
pause the bridge for good (real Redis and Kafka).

The leader writes the router's level to Redis with a TTL (watch_health.BACKPRESSURE_TTL_SECONDS)
and refreshes it every sample. A stalled leader stops refreshing it, the key expires, and the
bridge reads a missing key as NORMAL: its pause on a stale CRITICAL lasts at most that TTL.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis

from agents.watch_health import BACKPRESSURE_TTL_SECONDS
from app.configs import bridge_config
from bridge.service import Bridge
from core.settings import Settings
from frame_buffer_sdk.keys import backpressure_key
from tests.integration.test_bridge import redis_of, valid, wait_until, xadd_all

pytestmark = pytest.mark.integration
__all__ = ["redis_of"]  # the fixture


async def test_a_critical_level_the_leader_stopped_refreshing_expires_and_the_bridge_resumes(
    make_settings: Callable[..., Settings], redis_of: Callable[[Settings], aioredis.Redis]
) -> None:
    settings = make_settings(bridge_batch_size=40, bridge_block_ms=100)
    redis = redis_of(settings)
    key = backpressure_key(settings.app_id)
    doc = {"level": "CRITICAL", "router_lag": 0, "partitions": {}, "at": "2026-01-01T00:00:00+00:00"}
    # The leader's last write before it stalled; its TTL is shortened here to keep the test short.
    ttl = 2
    assert ttl <= BACKPRESSURE_TTL_SECONDS
    await redis.set(key, json.dumps(doc), ex=ttl)
    await xadd_all(redis, settings.capture_stream, [valid("cam-1", i, f"t-{i}") for i in range(100)])
    bridge = Bridge(bridge_config(settings), consumer="stale")
    serving = asyncio.create_task(bridge.serve())
    try:
        await asyncio.sleep(1.0)
        assert bridge.mirrored_total == 0  # paused while the level is there
        await wait_until(lambda: bridge.mirrored_total == 100, ttl + 15, "the bridge to resume once the key expired")
        assert await redis.get(key) is None
    finally:
        await bridge.close()
        await serving
