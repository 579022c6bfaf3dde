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


def missing_pixels(frame_key: str | None, age_seconds: float, ttl_seconds: float) -> tuple[str, str]:
    """Why a frame has no pixels, as a dead-letter reason and detail.

    A frame older than the capture's pixel TTL most likely waited too long (held while every
    processor was full, or in a lagging topic): ``pixels_expired`` says so, apart from a key that
    was never written or was removed (``pixels_missing``).
    """
    if not frame_key:
        return "pixels_missing", "frame has no frame_key"
    if age_seconds >= ttl_seconds:
        return (
            "pixels_expired",
            f"no pixels under key {frame_key!r}: the frame is {age_seconds:.0f} s old, "
            f"past FRAME_TTL_SECONDS ({ttl_seconds:.0f} s)",
        )
    return "pixels_missing", f"no pixels under key {frame_key!r}"
