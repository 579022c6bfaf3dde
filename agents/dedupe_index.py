"""The dedupe index: which (frame_id, capability) pairs this worker routed, and from where.

Exact and partition-local, in memory: one lookup per pair instead of a windowed table's reads
and a changelog record per pair. The index persists through a changelog-backed table written
in batches: each partition's new pairs are written as one table value about every
``flush_seconds`` (or every ``flush_pairs``), and a partition's index is rebuilt from those
batches when the partition is assigned. A crash loses at most the unflushed batch: a frame
redelivered from that window is routed again, and the processor SDK's done-markers drop it,
so the cost is a duplicate send, never a loss.

The value of a pair is "processor@origin": origin is where the routed record came from
(partition:offset/index), so the same record replayed after a crash is recognised as a
replay and routed again, while the same frame in another record is a duplicate.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

SEPARATOR = "|"


def dedupe_key(frame_id: str, capability: str) -> str:
    """Key of one routed pair. Capability names cannot contain '|', so keys never collide."""
    return f"{frame_id}{SEPARATOR}{capability}"


@dataclass(slots=True)
class _Partition:
    # Insertion-ordered: the first key is the oldest, which is what eviction wants.
    pairs: dict[str, tuple[str, float]] = field(default_factory=dict)
    # Already in the table's value form, so a flush hands the list over as it is.
    unflushed: list[list[object]] = field(default_factory=list)
    first_unflushed_at: float = 0.0
    # Batches written to the table, oldest first: (table key, newest pair time, pairs in it).
    batches: list[tuple[str, float, int]] = field(default_factory=list)
    batched_pairs: int = 0
    next_batch: int = 0


@dataclass(frozen=True, slots=True)
class Flush:
    """What to write to the table for one partition: a new batch, and old batches to delete."""

    key: str
    pairs: list[list[object]]
    expired: list[str]


class DedupeIndex:
    """Pairs routed per partition, forgotten after ``window_seconds`` or past ``max_pairs``."""

    def __init__(
        self, window_seconds: float, max_pairs: int, flush_seconds: float = 0.1, flush_pairs: int = 2_000
    ) -> None:
        if window_seconds <= 0 or max_pairs <= 0:
            raise ValueError("window_seconds and max_pairs must be positive")
        self.window_seconds = window_seconds
        self.max_pairs = max_pairs
        self.flush_seconds = flush_seconds
        self.flush_pairs = flush_pairs
        self._parts: dict[int, _Partition] = {}

    def __len__(self) -> int:
        return sum(len(p.pairs) for p in self._parts.values())

    def loaded(self, partition: int) -> bool:
        return partition in self._parts

    def get(self, partition: int, key: str, now: float) -> str | None:
        part = self._parts.get(partition)
        if part is None:
            return None
        found = part.pairs.get(key)
        if found is None or now - found[1] >= self.window_seconds:
            return None
        return found[0]

    def put(self, partition: int, key: str, value: str, now: float) -> None:
        part = self._parts.setdefault(partition, _Partition())
        pairs = part.pairs
        pairs.pop(key, None)
        pairs[key] = (value, now)
        if not part.unflushed:
            part.first_unflushed_at = now
        part.unflushed.append([key, value, now])
        if len(pairs) > self.max_pairs:
            del pairs[next(iter(pairs))]

    def expire(self, partition: int, now: float) -> None:
        """Drop pairs older than the window from the front (they are the oldest)."""
        part = self._parts.get(partition)
        if part is None:
            return
        pairs = part.pairs
        horizon = now - self.window_seconds
        while pairs:
            key = next(iter(pairs))
            if pairs[key][1] > horizon:
                break
            del pairs[key]

    def due(self, partition: int, now: float) -> Flush | None:
        """The batch to write now for this partition, if one is due; the caller writes it."""
        part = self._parts.get(partition)
        if part is None or not part.unflushed:
            return None
        if len(part.unflushed) < self.flush_pairs and now - part.first_unflushed_at < self.flush_seconds:
            return None
        key = f"{partition}:{part.next_batch}"
        part.next_batch += 1
        pairs = part.unflushed
        part.unflushed = []
        part.batches.append((key, now, len(pairs)))
        part.batched_pairs += len(pairs)
        return Flush(key, pairs, self._expired_batches(part, now))

    def _expired_batches(self, part: _Partition, now: float) -> list[str]:
        """Batches whose pairs are all past the window, or all evicted by ``max_pairs``."""
        horizon = now - self.window_seconds
        expired: list[str] = []
        batches = part.batches
        while batches and (batches[0][1] <= horizon or part.batched_pairs - batches[0][2] >= self.max_pairs):
            key, _, count = batches.pop(0)
            part.batched_pairs -= count
            expired.append(key)
        return expired

    def load(self, partition: int, batches: Iterable[tuple[str, list[list[object]]]], now: float) -> int:
        """Rebuild a partition from its table batches (any order); returns the pairs kept."""
        part = _Partition()
        ordered = sorted(batches, key=lambda kv: _batch_number(kv[0]))
        for key, pairs in ordered:
            newest = 0.0
            for k, v, t in pairs:
                stamp = float(t)  # type: ignore[arg-type]
                newest = max(newest, stamp)
                if now - stamp < self.window_seconds:
                    part.pairs.pop(str(k), None)
                    part.pairs[str(k)] = (str(v), stamp)
            part.batches.append((key, newest, len(pairs)))
            part.batched_pairs += len(pairs)
            part.next_batch = _batch_number(key) + 1
        while len(part.pairs) > self.max_pairs:
            del part.pairs[next(iter(part.pairs))]
        self._parts[partition] = part
        return len(part.pairs)

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget partitions this worker no longer owns; their next owner rebuilds them."""
        for p in partitions:
            self._parts.pop(p, None)

    def partitions(self) -> Iterator[int]:
        return iter(list(self._parts))


def batch_partition(key: str) -> int:
    return int(key.partition(":")[0])


def _batch_number(key: str) -> int:
    return int(key.partition(":")[2])
