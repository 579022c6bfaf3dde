"""The claim-check pixels of frames the router holds, kept in Redis while they wait.

A frame's pixels sit under its ``frame_key`` with the capture's TTL (FRAME_TTL_SECONDS). A
protected frame held while every processor of its capability is CRITICAL can wait longer than
that, and its processor would then find nothing. While frames are held, the TTL of their keys is
pushed back to FRAME_TTL_SECONDS from now: every held key in one pipelined round trip per hold
tick, a new key on the next tick, the others every ``refresh_seconds``. PEXPIRE with GT never
shortens a longer TTL and leaves a key without one alone. A key found gone is remembered, so the
frame is dead-lettered with the SDK's reason (``pixels_expired`` past the TTL) instead of being
sent without its pixels. A frame that is never held costs nothing here.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


class HeldPixels:
    """Keys of the frames held now, by how many holds name each."""

    def __init__(
        self,
        redis: Callable[[], aioredis.Redis],
        ttl_seconds: float,
        *,
        prefix: str | None = None,
        refresh_seconds: float | None = None,
    ) -> None:
        """``prefix``: only keys under it are touched (PROCESSOR_FRAME_KEY_PREFIX: a forged entry
        must not keep some other key alive). ``refresh_seconds``: default a quarter of the TTL, so
        a key is renewed long before it could expire."""
        if ttl_seconds <= 0:
            raise ValueError(f"ttl_seconds must be positive, got {ttl_seconds}")
        self._redis = redis
        self.ttl_ms = max(1, round(ttl_seconds * 1000))
        self.refresh_seconds = refresh_seconds if refresh_seconds is not None else max(0.5, ttl_seconds / 4)
        self.prefix = prefix
        self._held: Counter[str] = Counter()
        self._new: set[str] = set()
        self._gone: set[str] = set()
        self._renewed_at = float("-inf")
        self._busy = False
        self.renewals = 0  # round trips made, for tests and logs

    def keeps(self, key: str | None) -> bool:
        if not key:
            return False
        return self.prefix is None or key.startswith(self.prefix)

    @contextmanager
    def holding(self, keys: Iterable[str | None]) -> Iterator[None]:
        """The keys stay renewed by ``tick`` until the block ends."""
        mine = [key for key in keys if key is not None and self.keeps(key)]
        for key in mine:
            if not self._held[key]:
                self._new.add(key)
            self._held[key] += 1
        try:
            yield
        finally:
            for key in mine:
                self._held[key] -= 1
                if self._held[key] <= 0:
                    del self._held[key]
                    self._new.discard(key)
                    self._gone.discard(key)

    def gone(self, key: str | None) -> bool:
        """True when a tick found the held ``key`` no longer in Redis."""
        return key is not None and key in self._gone

    async def tick(self, now: float) -> None:
        """Renew what is due, in one round trip; a concurrent hold's tick does it for both."""
        if self._busy or not self._held:
            return
        due = now - self._renewed_at >= self.refresh_seconds
        keys = list(self._held) if due else [key for key in self._new if key in self._held]
        if not keys:
            return
        self._busy = True
        try:
            async with self._redis().pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.pexpire(key, self.ttl_ms, gt=True)
                    pipe.exists(key)
                replies = await pipe.execute()
        except (RedisError, OSError) as exc:
            # Not renewed: the processor still tells expired pixels apart by the frame's age.
            log.warning("could not renew the pixels of %d held frame(s): %r", len(keys), exc)
            return
        finally:
            self._busy = False
        self.renewals += 1
        for key, exists in zip(keys, replies[1::2], strict=True):
            self._new.discard(key)
            if not exists and key in self._held:
                self._gone.add(key)
        if due:
            self._renewed_at = now
