"""Claim-check: the pixel bytes of a batch of frames, read from Redis in one round trip."""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis

# Keys per MGET: bounds one reply's size (frames can be megabytes) while the
# pipeline still sends all chunks of a batch in a single round trip.
MGET_CHUNK = 64


class PixelStore:
    """Reads pixel bytes by ``frame_key``; a missing or expired key reads as None."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def load_many(self, keys: Sequence[str | None]) -> list[bytes | None]:
        """Pixels of each key, in order; None where the key is None or absent."""
        wanted = [key for key in keys if key]
        if not wanted:
            return [None] * len(keys)
        async with self._redis.pipeline(transaction=False) as pipe:
            for start in range(0, len(wanted), MGET_CHUNK):
                pipe.mget(wanted[start : start + MGET_CHUNK])
            chunks: list[list[bytes | None]] = await pipe.execute()
        found = iter([value for chunk in chunks for value in chunk])
        return [next(found) if key else None for key in keys]

    async def close(self) -> None:
        await self._redis.aclose()
