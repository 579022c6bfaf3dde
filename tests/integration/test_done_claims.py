"""Two processors holding one (frame, capability) pair at once publish it once (real Redis).

The race of issue 10 item 9: a slow processor and the peer its backlog was failed over to both
finish a pair; without a claim both read "not done" and both publish."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from redis.asyncio import Redis

from frame_buffer_sdk.done import DoneMarkers

pytestmark = pytest.mark.integration


def markers(stack: Any, namespace: str, owner: str, claim_seconds: float = 10.0) -> DoneMarkers:
    return DoneMarkers(Redis.from_url(stack.redis_url), namespace, 60, owner=owner, claim_seconds=claim_seconds)


async def test_the_second_publisher_waits_for_the_first_and_drops_the_pair(stack: Any, unique: str) -> None:
    slow, fast = markers(stack, unique, "slow"), markers(stack, unique, "fast")
    key = slow.key("f1", "detect")
    try:
        assert await slow.settle([key]) == set()  # slow holds the claim now
        waiting = asyncio.create_task(fast.settle([key]))
        await asyncio.sleep(0.3)
        assert not waiting.done(), "the peer must wait while the claim is held"
        await slow.mark([key])  # published and acknowledged
        assert await asyncio.wait_for(waiting, 5) == {key}  # fast drops its copy
    finally:
        await slow.close()
        await fast.close()


async def test_a_claim_whose_holder_died_expires_and_the_peer_publishes(stack: Any, unique: str) -> None:
    dead, peer = markers(stack, unique, "dead", claim_seconds=0.5), markers(stack, unique, "peer")
    key = dead.key("f2", "detect")
    try:
        assert await dead.settle([key]) == set()
        started = time.monotonic()
        assert await asyncio.wait_for(peer.settle([key]), 5) == set()  # nothing to drop: publish
        assert time.monotonic() - started >= 0.3
        assert await dead.finished([key]) == [False]
    finally:
        await dead.close()
        await peer.close()


async def test_a_released_claim_frees_the_pair_at_once_and_the_holder_may_settle_again(stack: Any, unique: str) -> None:
    first, second = markers(stack, unique, "first"), markers(stack, unique, "second")
    keys = [first.key(f"f{i}", "detect") for i in range(3)]
    try:
        assert await first.settle(keys) == set()
        assert await first.settle(keys) == set()  # its own claims: a retry of the same batch
        await first.release(keys)
        assert await asyncio.wait_for(second.settle(keys), 1) == set()
        await second.mark(keys[:1])
        assert await first.finished(keys) == [True, False, False]
    finally:
        await first.close()
        await second.close()
