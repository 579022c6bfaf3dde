"""The capture stream's two ends: entries the capture's MAXLEN trimmed before the bridge
group read them (lost: counted and reported, never silently skipped), and entries every group
has acknowledged (done: trimmed here, or only MAXLEN would bound the stream, cutting unread
entries as readily as finished ones).

A gap is seen just before a read: only the stream's head is ever trimmed, so when the group's
last-delivered id is below the first entry, every entry between them was trimmed unread. The
group's ``entries-read`` is the position of its last-delivered entry among all entries ever
added (Redis estimates it so after a skip), and ``entries-added - length`` entries precede the
first one left; the difference is the gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

# Long enough for every bridge to have read past the gap; the next gap starts elsewhere.
GAP_MARKER_SECONDS = 3600


@dataclass(frozen=True, slots=True)
class StreamState:
    entries_added: int
    length: int
    entries_read: int | None  # the group's; None when Redis cannot tell
    last_delivered: str
    first_id: str | None


def _id(value: Any) -> tuple[int, int]:
    text = value.decode() if isinstance(value, bytes) else str(value)
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def gap_ahead(state: StreamState) -> int | None:
    """Entries trimmed between the group's last-delivered id and the first entry left (None:
    Redis cannot tell where the group stands)."""
    if state.first_id is None or _id(state.first_id) <= _id(state.last_delivered):
        return 0
    if state.entries_read is not None:
        position = state.entries_read
    elif state.last_delivered == "0-0":
        position = 0  # a group created at the start that has read nothing
    else:
        return None
    return max(0, state.entries_added - state.length - position)


def next_id(stream_id: str) -> str:
    """The smallest id after ``stream_id``: XTRIM MINID keeps it and everything after."""
    ms, seq = _id(stream_id)
    return f"{ms}-{seq + 1}"


def trim_point(groups: list[tuple[str, str | None]]) -> str | None:
    """MINID below which every group is done: per group (last-delivered, oldest pending)."""
    if not groups:
        return None
    keep = [oldest if oldest is not None else next_id(delivered) for delivered, oldest in groups]
    return min(keep, key=_id)


async def stream_state(redis: Redis, stream: str, group: str) -> StreamState | None:
    info = await redis.xinfo_stream(stream)
    for g in await redis.xinfo_groups(stream):
        if _text(g.get("name")) != group:
            continue
        first = info.get("first-entry")
        read = g.get("entries-read")
        return StreamState(
            entries_added=int(info.get("entries-added") or 0),
            length=int(info.get("length") or 0),
            entries_read=None if read is None else int(read),
            last_delivered=_text(g.get("last-delivered-id") or "0-0"),
            first_id=_text(first[0]) if first else None,
        )
    return None


async def count_gap(redis: Redis, stream: str, group: str, marker_prefix: str) -> int:
    """The entries trimmed unread just ahead of ``group``, counted once however many bridges
    look: the first to mark the gap (by the id it starts after) owns it. 0 when there is none."""
    state = await stream_state(redis, stream, group)
    gap = gap_ahead(state) if state is not None else 0
    if not gap or state is None:
        return 0
    if not await redis.set(f"{marker_prefix}{state.last_delivered}", gap, nx=True, ex=GAP_MARKER_SECONDS):
        return 0
    return gap


async def trim_acknowledged(redis: Redis, stream: str) -> int:
    """XTRIM MINID the prefix every group of the stream has read and acknowledged."""
    positions: list[tuple[str, str | None]] = []
    for g in await redis.xinfo_groups(stream):
        name = _text(g.get("name"))
        summary = await redis.xpending(stream, name)
        oldest = summary.get("min") if summary and summary.get("pending") else None
        positions.append((_text(g.get("last-delivered-id") or "0-0"), _text(oldest) if oldest else None))
    minid = trim_point(positions)
    if minid is None:
        return 0
    # Approximate: Redis drops whole nodes only, never an entry at or after minid.
    return int(await redis.xtrim(stream, minid=minid, approximate=True))
