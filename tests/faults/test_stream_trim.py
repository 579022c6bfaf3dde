"""Entries the capture's MAXLEN trims before the bridge read them are counted, not silently
gone; entries every group acknowledged are trimmed (real Valkey and Kafka)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis

from app.configs import bridge_config
from bridge.service import Bridge
from core.settings import Settings
from frame_buffer_sdk.keys import bridge_state_key
from tests.faults.bridges import serving
from tests.integration.test_bridge import valid, wait_until

pytestmark = pytest.mark.integration
MakeSettings = Callable[..., Settings]


async def test_entries_trimmed_unread_are_reported_and_acknowledged_ones_trimmed(
    make_settings: MakeSettings, redis_client: aioredis.Redis
) -> None:
    settings = make_settings(bridge_block_ms=100)
    stream = settings.capture_stream
    await redis_client.xgroup_create(stream, settings.capture_group, id="0", mkstream=True)
    # The bridge is down while the capture writes 300 entries into a stream capped at 100.
    for n in range(300):
        await redis_client.xadd(stream, valid("cam", n, f"f-{n}"), maxlen=100, approximate=False)  # type: ignore[arg-type]

    async with serving(Bridge(bridge_config(settings), consumer="b")) as bridge:
        await wait_until(lambda: bridge.mirrored_total >= 100, 60, "the 100 entries left mirrored")

        async def reported() -> bool:
            raw = await redis_client.get(bridge_state_key(settings.app_id, "b"))
            # Nothing is left to read: the lost entries are counted, not a backlog.
            return raw is not None and (json.loads(raw)["trimmed_unread"], json.loads(raw)["backlog"]) == (200, 0)

        await wait_until(reported, 10, "200 entries reported as trimmed unread, none as backlog")

        async def trimmed() -> bool:
            return int(await redis_client.xlen(stream)) < 100

        await wait_until(trimmed, 10, "the acknowledged prefix trimmed")
        # A new entry is mirrored and the count of lost ones stays where it is.
        await redis_client.xadd(stream, valid("cam", 300, "f-300"))  # type: ignore[arg-type]
        await wait_until(lambda: bridge.mirrored_total >= 101, 10, "the new entry mirrored")
        await asyncio.sleep(1.5)
        doc = json.loads(await redis_client.get(bridge_state_key(settings.app_id, "b")) or b"{}")
        assert doc["trimmed_unread"] == 200
    assert bridge.mirrored_total == 101
