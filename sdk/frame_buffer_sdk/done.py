"""Finished (frame, capability) pairs, so a frame delivered twice is processed once.

Deliveries repeat for good reasons: a replica dies after publishing results but before
committing, a worker replays records after a crash, failover moves a backlog whose first
owner already finished part of it. The markers are shared by every processor of a
capability (keyed by frame and capability, not by processor) and live in the Redis that
holds the pixels, for the dedupe window.

Two processors that hold the same pair at once (a slow one and the peer its backlog was
failed over to) race to publish it. So before publishing, a processor claims each pair for
a few seconds (``settle``): a pair claimed by another waits until that one marks it done
(dropped here) or its claim expires (its holder died; published here).

A marker is written after the results are acknowledged and before the offsets are
committed. What is left is a replica killed after the broker appended its results and
before the markers were written; then its successor publishes that batch again, which
consumers of the results topic can drop by the same key.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import Sequence

import redis.asyncio as aioredis

from frame_buffer_sdk.keys import done_claim_key, done_marker_prefix

# Long enough for one publish and its acknowledgement; a claim outliving its holder holds the
# pair's peers back this long, no longer.
CLAIM_SECONDS = 10.0
CLAIM_POLL_SECONDS = 0.05
# Deletes a claim only if it is still this processor's (it may have expired and been retaken).
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class DoneMarkers:
    def __init__(
        self,
        redis: aioredis.Redis,
        namespace: str,
        ttl_seconds: int,
        *,
        owner: str | None = None,
        claim_seconds: float = CLAIM_SECONDS,
    ) -> None:
        self._redis = redis
        self._prefix = done_marker_prefix(namespace)
        self._ttl = max(1, ttl_seconds)
        self.owner = owner or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        self._claim_ms = max(1, int(claim_seconds * 1000))

    def key(self, frame_id: str, capability: str) -> str:
        return f"{self._prefix}{frame_id}|{capability}"

    async def finished(self, keys: Sequence[str]) -> list[bool]:
        """Which of these pairs some processor already finished, in one round trip."""
        if not keys:
            return []
        values = await self._redis.mget(list(keys))
        return [value is not None for value in values]

    async def settle(self, keys: Sequence[str]) -> set[str]:
        """Right before publishing: which of these pairs another processor finished (drop them).

        Every other pair is claimed by this processor when it returns. A pair another one holds
        is waited for, until it is marked done or its claim expires. The claim is taken before
        the marker is read: a holder marks before it lets go, so a free claim and no marker
        mean nobody published the pair."""
        finished_elsewhere: set[str] = set()
        pending = list(dict.fromkeys(keys))
        while pending:
            held = await self._claim(pending)
            done = await self.finished(pending)
            finished_elsewhere.update(key for key, is_done in zip(pending, done, strict=True) if is_done)
            pending = [key for key, mine, is_done in zip(pending, held, done, strict=True) if not mine and not is_done]
            if pending:
                await asyncio.sleep(CLAIM_POLL_SECONDS)
        return finished_elsewhere

    async def _claim(self, keys: Sequence[str]) -> list[bool]:
        """True where this processor holds the pair's claim now (newly taken or still its own)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.set(done_claim_key(key), self.owner, nx=True, px=self._claim_ms)
            for key in keys:
                pipe.get(done_claim_key(key))
            replies = await pipe.execute()
        owner = self.owner.encode()
        return [holder == owner for holder in replies[len(keys) :]]

    async def mark(self, keys: Sequence[str]) -> None:
        """These pairs are published and acknowledged: marked done, and their claims let go."""
        if not keys:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.set(key, b"1", ex=self._ttl)
            for key in keys:
                pipe.eval(_RELEASE, 1, done_claim_key(key), self.owner)
            await pipe.execute()

    async def release(self, keys: Sequence[str]) -> None:
        """Let go of claims without marking: the batch will be processed again."""
        if not keys:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.eval(_RELEASE, 1, done_claim_key(key), self.owner)
            await pipe.execute()

    async def close(self) -> None:
        await self._redis.aclose()
