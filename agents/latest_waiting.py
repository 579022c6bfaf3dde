"""The newest held frame per camera and capability, kept in memory and persisted in coalesced writes.

Pure code: no Faust, time passed in. route_frames holds a sheddable frame by sending it to the
waiting topic; drain_waiting later sheds it if a newer frame of its camera was held since. Under
overload nearly every frame is held, and a table write per held frame (one changelog record each)
filled Faust's producer buffer: every stream of the worker, the heartbeat fold included, then
waited behind it. So the newest frame lives here, for the partitions this worker owns, and goes
to the ``latest_waiting`` table at most once per partition per ``tick_seconds``: the first hold
after a quiet tick is written at once, later ones in the same tick only as the newest of the tick.

Each held frame carries its sequence in its captured partition (offset, index in the envelope),
which only grows along a camera's frames. That is what keeps a new owner right after a
rebalance or a crash, when the table may lack the last tick's writes:

- a held record older than the newest known is shed, as before;
- a held record NEWER than the table's value proves the table stale: it is adopted as the
  newest and kept, never shed. Without sequences the newest frame of a camera was shed whenever
  its table write had been lost.

The window: after a crash (a revoke sends the unwritten tick to the changelog first, though a
next owner whose recovery read the changelog before that record landed misses it too), the
frames of a camera held during the last unwritten tick each look newest in turn to the next
owner, so those that find room are sent instead of shed. Nothing is lost or sent twice by this;
at most one tick's frames per camera reach a processor that had room for them.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

TICK_SECONDS = 0.1


@dataclass(frozen=True, slots=True)
class Held:
    """A held frame: its id, and where it was in its captured partition (None: a record held
    before sequences existed)."""

    frame_id: str
    seq: tuple[int, int] | None = None

    def value(self) -> dict[str, Any]:
        """The table value (JSON)."""
        return {"frame_id": self.frame_id, "seq": list(self.seq) if self.seq is not None else None}


def parse_held(value: Any) -> Held | None:
    """A table value: a dict written by value(), a bare frame id from earlier versions, or
    nothing (the table's default, an empty string)."""
    if isinstance(value, dict) and value.get("frame_id"):
        seq = value.get("seq")
        return Held(str(value["frame_id"]), (int(seq[0]), int(seq[1])) if seq else None)
    if isinstance(value, str) and value:
        return Held(value)
    return None


class Verdict(enum.Enum):
    KEEP = "keep"  # the newest known: wait for room
    ADOPT = "adopt"  # newer than the newest known (which was stale or missing): it is the newest now
    SHED = "shed"  # a newer frame of the camera was held since


def judge(newest: Held | None, record: Held) -> Verdict:
    """What the drain does with a held record, given the newest frame known for its key."""
    if newest is None:
        # The write that named it was lost with the previous owner: it may well be the newest.
        return Verdict.ADOPT
    if newest.frame_id == record.frame_id:
        return Verdict.KEEP
    if record.seq is not None and newest.seq is not None and record.seq > newest.seq:
        return Verdict.ADOPT
    return Verdict.SHED


@dataclass(slots=True)
class _Partition:
    # Held since the last write, newest per key; written at the next due tick.
    dirty: dict[str, Held] = field(default_factory=dict)
    written_at: float = float("-inf")


class LatestWaiting:
    """The newest held frame per key, for the partitions of this worker; the caller writes the
    table with what held(), due() and drop() return, inside a stream of that partition."""

    def __init__(self, tick_seconds: float = TICK_SECONDS) -> None:
        if tick_seconds < 0:
            raise ValueError("tick_seconds must be >= 0")
        self.tick_seconds = tick_seconds
        self._parts: dict[int, _Partition] = {}

    def held(self, partition: int, key: str, held: Held, now: float) -> list[tuple[str, Held]]:
        """``held`` is now the newest of its key; returns the writes due now."""
        self._parts.setdefault(partition, _Partition()).dirty[key] = held
        return self.due(partition, now)

    def newest(self, partition: int, key: str) -> Held | None:
        """The newest held frame not yet written to the table; None: the table has the newest."""
        part = self._parts.get(partition)
        return None if part is None else part.dirty.get(key)

    def due(self, partition: int, now: float) -> list[tuple[str, Held]]:
        """The partition's unwritten newest frames, once a tick has passed since its last write."""
        part = self._parts.get(partition)
        if part is None or not part.dirty or now - part.written_at < self.tick_seconds:
            return []
        writes = list(part.dirty.items())
        part.dirty = {}
        part.written_at = now
        return writes

    def unwritten(self) -> int:
        return sum(len(p.dirty) for p in self._parts.values())

    def drop(self, partitions: Iterable[int]) -> dict[int, list[tuple[str, Held]]]:
        """Forget partitions this worker lost; returns their unwritten frames, for the caller to
        persist before the next owner reads the table."""
        left: dict[int, list[tuple[str, Held]]] = {}
        for p in partitions:
            part = self._parts.pop(p, None)
            if part is not None and part.dirty:
                left[p] = list(part.dirty.items())
        return left
