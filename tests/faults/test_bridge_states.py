"""The backpressure view finds bridges through their index, never by SCANning the keyspace."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis

from app.configs import bridge_config
from bridge.names import bridge_states
from bridge.service import Bridge
from core.settings import Settings
from tests.integration.test_bridge import wait_until

pytestmark = pytest.mark.integration


async def scans(redis: aioredis.Redis) -> int:
    stats = await redis.info("commandstats")
    return int((stats.get("cmdstat_scan") or {}).get("calls", 0))


async def test_bridge_states_are_read_from_the_index_without_a_scan(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(bridge_block_ms=100)
    redis = aioredis.from_url(settings.redis_url)
    bridge = Bridge(bridge_config(settings), consumer="indexed")
    task = asyncio.create_task(bridge.serve())
    try:
        await wait_until(lambda: _listed(redis, settings), 20, "the bridge's state listed")
        before = await scans(redis)
        states = await bridge_states(redis, settings.app_id)
        assert [s["consumer"] for s in states] == ["indexed"]
        assert await scans(redis) == before
    finally:
        await bridge.close()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)
    assert await bridge_states(redis, settings.app_id) == [], "a stopped bridge leaves the index"
    await redis.aclose()


async def _listed(redis: aioredis.Redis, settings: Settings) -> bool:
    return bool(await bridge_states(redis, settings.app_id))
