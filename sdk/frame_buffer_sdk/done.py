"""Finished (frame, capability) pairs, so a frame delivered twice is processed once.

Deliveries repeat for good reasons: a replica dies after publishing results but before
committing, a worker replays records after a crash, failover moves a backlog whose first
owner already finished part of it. The markers are shared by every processor of a
capability (keyed by frame and capability, not by processor) and live in the Redis that
holds the pixels, for the dedupe window.

A marker is written after the results are acknowledged and before the offsets are
committed. What is left is a replica killed after the broker appended its results and
before the markers were written; then its successor publishes that batch again, which
consumers of the results topic can drop by the same key.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis

from frame_buffer_sdk.keys import done_marker_prefix


class DoneMarkers:
    def __init__(self, redis: aioredis.Redis, namespace: str, ttl_seconds: int) -> None:
        self._redis = redis
        self._prefix = done_marker_prefix(namespace)
        self._ttl = max(1, ttl_seconds)

    def key(self, frame_id: str, capability: str) -> str:
        return f"{self._prefix}{frame_id}|{capability}"

    async def finished(self, keys: Sequence[str]) -> list[bool]:
        """Which of these pairs some processor already finished, in one round trip."""
        if not keys:
            return []
        values = await self._redis.mget(list(keys))
        return [value is not None for value in values]

    async def mark(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.set(key, b"1", ex=self._ttl)
            await pipe.execute()

    async def close(self) -> None:
        await self._redis.aclose()
