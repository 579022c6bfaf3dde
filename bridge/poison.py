"""Entries the bridge gives up on instead of retrying: records Kafka refuses for good, and
poison pills (entries delivered more often than a bridge should ever need).

Either one left pending would be re-read first after every failure, ahead of every newer
entry, so the bridge would mirror nothing else. Both are dead-lettered, then acknowledged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis

from bridge import letters
from bridge.source import Entry
from frame_buffer_sdk.kafka import refused_for_good as refused_for_good  # what Kafka refuses for good
from frame_buffer_sdk.models import DeadLetter

REFUSED_REASON = "kafka_refused"
POISON_REASON = "poison_pill"


def is_poison(deliveries: int, max_deliveries: int) -> bool:
    """An entry read more than ``max_deliveries`` times has failed every time: stop trying it."""
    return deliveries > max_deliveries


def elsewhere(deliveries: int, ours: int) -> int:
    """Deliveries of an entry to bridges that are gone: the group's count less this process's reads.

    A bridge retrying its own batch through a broker outage re-reads its pending entries every
    few seconds; those reads say nothing about the entry, and counting them would dead-letter
    every good frame pending when the broker came back. Only bridges that read the entry and
    then died without acknowledging it (or this one, re-read after a crash) make it a poison pill.
    """
    return max(0, deliveries - ours)


class ReadCounts:
    """How often this process read each still-pending entry (bounded: cleared when it grows past
    MAX_TRACKED, e.g. when other consumers claimed what this one read)."""

    MAX_TRACKED = 100_000

    def __init__(self) -> None:
        self._reads: dict[str, int] = {}

    def see(self, stream_id: str) -> int:
        if len(self._reads) >= self.MAX_TRACKED and stream_id not in self._reads:
            self._reads.clear()
        count = self._reads[stream_id] = self._reads.get(stream_id, 0) + 1
        return count

    def forget(self, stream_ids: Sequence[str]) -> None:
        for stream_id in stream_ids:
            self._reads.pop(stream_id, None)


def _text(value: Any) -> str:
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)


def evidence(fields: dict[Any, Any]) -> dict[str, str]:
    """The entry's fields as text without parsing them: the parse may be what keeps failing."""
    return {_text(key): _text(value) for key, value in fields.items()}


def poison_letter(entry: Entry, max_deliveries: int) -> DeadLetter:
    fields = evidence(entry.fields)
    return letters.letter(
        POISON_REASON,
        f"delivered more than {max_deliveries} times without being mirrored (BRIDGE_MAX_DELIVERIES)",
        entry.stream_id,
        fields,
        fields.get("frame_id"),
        fields.get("camera_id"),
    )


def refused_letter(entry: Entry, error: BaseException) -> DeadLetter:
    fields = evidence(entry.fields)
    return letters.letter(
        REFUSED_REASON,
        f"Kafka refused the frame's record for good: {error!r}",
        entry.stream_id,
        fields,
        fields.get("frame_id"),
        fields.get("camera_id"),
    )


async def delivery_counts(
    redis: Redis, stream: str, group: str, consumer: str, stream_ids: Sequence[str]
) -> dict[str, int]:
    """How often the group has delivered each of ``stream_ids``, all in ``consumer``'s PEL (one
    XPENDING over their range). Ids not found there are absent; callers treat absent as once.
    """
    if not stream_ids:
        return {}
    wanted = set(stream_ids)
    ordered = sorted(stream_ids, key=_id_key)
    rows = await redis.xpending_range(
        stream, group, min=ordered[0], max=ordered[-1], count=len(ordered) * 2 + 10, consumername=consumer
    )
    counts: dict[str, int] = {}
    for row in rows:
        sid = _text(row["message_id"])
        if sid in wanted:
            counts[sid] = int(row["times_delivered"])
    return counts


def _id_key(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)
