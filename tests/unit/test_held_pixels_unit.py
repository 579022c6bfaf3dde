"""HeldPixels without a Redis to talk to: a failed renewal never stops a hold."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from agents.held_pixels import HeldPixels


async def test_an_unreachable_redis_is_logged_and_the_hold_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    client = aioredis.from_url("redis://127.0.0.1:1", socket_connect_timeout=1)
    pixels = HeldPixels(lambda: client, 2)
    with pixels.holding(["px:a"]):
        await pixels.tick(0.0)
        assert not pixels.gone("px:a")
    await client.aclose()
    assert pixels.renewals == 0
    assert "could not renew the pixels of 1 held frame(s)" in caplog.text


async def test_nothing_held_or_outside_the_prefix_makes_no_round_trip() -> None:
    def no_redis() -> aioredis.Redis:
        raise AssertionError("no Redis call expected")

    pixels = HeldPixels(no_redis, 2, prefix="px:")
    await pixels.tick(0.0)
    with pixels.holding([None, "", "other:key"]):
        await pixels.tick(1.0)
    assert pixels.renewals == 0


def test_the_ttl_must_be_positive() -> None:
    with pytest.raises(ValueError):
        HeldPixels(lambda: aioredis.Redis(), 0)
