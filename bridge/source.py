"""The Redis side of the bridge: the capture stream read through a consumer group."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

# Cursor XAUTOCLAIM starts from and returns when it has scanned the whole PEL.
CLAIM_START = "0-0"


@dataclass(frozen=True, slots=True)
class Entry:
    """One stream entry. ``fields`` is empty when the entry was trimmed or deleted after it was read."""

    stream_id: str
    fields: dict[Any, Any]


@dataclass(frozen=True, slots=True)
class GroupState:
    backlog: int  # entries not yet delivered to the group (XINFO GROUPS lag)
    pending: int  # delivered but not acknowledged


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entries(raw: Iterable[Any] | None) -> list[Entry]:
    out: list[Entry] = []
    for item in raw or ():
        stream_id, fields = item[0], item[1]
        if stream_id is None:  # Redis 6.2 XAUTOCLAIM reports a deleted entry as nil
            continue
        out.append(Entry(_text(stream_id), dict(fields or {})))
    return out


def _read_reply(response: Any) -> list[Entry]:
    """XREADGROUP of one stream, whatever shape the protocol (RESP2/RESP3) and client version give."""
    if not response:
        return []
    groups = list(response.values()) if isinstance(response, dict) else [item[1] for item in response]
    out: list[Entry] = []
    for entries in groups:
        # The RESP3 parser of some redis-py versions wraps the entry list once more.
        if entries and isinstance(entries[0], list):
            entries = entries[0]
        out.extend(_entries(entries))
    return out


class CaptureSource:
    """XREADGROUP / XAUTOCLAIM / XACK on one stream for one consumer of one group."""

    def __init__(self, redis: Redis, stream: str, group: str, consumer: str) -> None:
        self.redis = redis
        self.stream = stream
        self.group = group
        self.consumer = consumer

    async def ensure_group(self) -> None:
        """Create the group (and the stream) if missing; entries already there will be mirrored."""
        try:
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read_new(self, count: int, block_ms: int) -> list[Entry]:
        response = await self.redis.xreadgroup(
            self.group, self.consumer, {self.stream: ">"}, count=count, block=block_ms
        )
        return _read_reply(response)

    async def read_own_pending(self, after: str, count: int) -> list[Entry]:
        """Entries this consumer name read but did not acknowledge, oldest first, after ``after``."""
        response = await self.redis.xreadgroup(self.group, self.consumer, {self.stream: after}, count=count)
        return _read_reply(response)

    async def claim_idle(self, cursor: str, min_idle_ms: int, count: int) -> tuple[str, list[Entry]]:
        """Take over entries idle longer than ``min_idle_ms`` in any consumer's PEL.

        Entries deleted from the stream meanwhile come back with empty fields, so the caller
        can account for them rather than lose them silently.
        """
        reply = await self.redis.xautoclaim(
            self.stream, self.group, self.consumer, min_idle_time=min_idle_ms, start_id=cursor, count=count
        )
        entries = _entries(reply[1])
        deleted = reply[2] if len(reply) > 2 else []
        entries.extend(Entry(_text(stream_id), {}) for stream_id in deleted or ())
        return _text(reply[0]), entries

    async def ack(self, stream_ids: Sequence[str]) -> int:
        if not stream_ids:
            return 0
        return int(await self.redis.xack(self.stream, self.group, *stream_ids))

    async def group_state(self) -> GroupState:
        for info in await self.redis.xinfo_groups(self.stream):
            if _text(info.get("name")) != self.group:
                continue
            lag = info.get("lag")
            if lag is None:
                # Redis cannot tell the lag after deletions inside the stream; the length bounds it.
                lag = await self.redis.xlen(self.stream)
            return GroupState(backlog=max(0, int(lag)), pending=int(info.get("pending") or 0))
        return GroupState(backlog=0, pending=0)
