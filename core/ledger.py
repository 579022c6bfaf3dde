"""Frame counts per source partition, each tied to the offsets it covers. Pure: no Kafka, no Faust.

Every count is made while a worker handles one record of a source partition (a captured or
waiting record by the router, a result or a processor's dead letter by its counter). A
partition's counts travel as cumulative snapshots: the counts of every record up to and
including ``covered``, the highest source offset they count. That makes the counts exact
across rebalances:

* a new owner starts from the best snapshot it can find (the highest ``covered``) and does not
  count a record at or below it again, so a replay is never counted twice;
* a record is acked (made committable) only once a snapshot covering it was delivered, so the
  group's commit never passes what some snapshot counts, and a crash loses no count;
* a snapshot is taken only between records, never with half a record counted.

Snapshots of one partition by different workers never add up: they are alternatives, and the
one covering more wins (``best``). A worker frozen past its session that wakes and writes a
last snapshot cannot undo a newer owner's counts for long, nor make it count twice.

Counting code reaches the current record's counters through ``current()``, a context variable:
each agent runs in its own task, so two agents interleaving at their awaits each count into
their own record's partition.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from core.counters import FrameCounters, sum_snapshots

Source = tuple[str, int]  # (topic, partition); Faust's TP is one
Snapshot = dict[str, Any]
Ack = Callable[[], Any]

log = logging.getLogger(__name__)
COVERED = "covered"
AT = "at"


def source_name(source: Source) -> str:
    """``topic/partition``: Kafka topic names never hold a slash."""
    return f"{source[0]}/{source[1]}"


def best(snapshots: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """Of one partition's snapshots, the one covering the most; the later one of a tie."""
    return max(snapshots, key=lambda snap: (snap.get(COVERED, -1), snap.get(AT, 0.0)), default=None)


def system_totals(entries: Iterable[Mapping[str, Any] | None]) -> dict[str, Any]:
    """The whole system's counts from what every worker boot published: per source partition
    the best snapshot any boot has of it (never a sum of two), plus every boot's unowned counts.
    A boot of an older version published plain totals: they add up as they are."""
    per_source: dict[str, list[Mapping[str, Any]]] = {}
    loose: list[Mapping[str, Any]] = []
    for entry in entries:
        if not entry:
            continue
        sources = entry.get("sources")
        if sources is None:
            loose.append(entry)
            continue
        for name, snap in sources.items():
            per_source.setdefault(name, []).append(snap)
        if entry.get("unowned"):
            loose.append(entry["unowned"])
    chosen = [snap for snap in (best(snaps) for snaps in per_source.values()) if snap is not None]
    return sum_snapshots([*chosen, *loose])


def counters_from(snapshot: Mapping[str, Any] | None) -> FrameCounters:
    counters = FrameCounters()
    if snapshot:
        counters.add(snapshot)
    return counters


@dataclass(eq=False)
class SourceCounts:
    """One source partition owned by this worker: its counts, and which of them are durable."""

    source: Source
    counters: FrameCounters
    # Highest offset counted; what the last snapshot taken covered; what a delivered one covers.
    covered: int = -1
    snapped: int = -1
    durable: int = -1
    # The record being counted, between begin and end: no snapshot is taken meanwhile.
    busy: bool = False
    # A snapshot fell due while a record was being counted: taken when it ends.
    wanted: bool = False
    dropped: bool = False
    last: Snapshot | None = None
    acks: deque[tuple[int, Ack]] = field(default_factory=deque)


class _Discard(FrameCounters):
    """Counts of a record some snapshot already counts (a replay): made, then never read."""


class Ledger:
    """This worker's counts, per source partition it owns.

    ``load`` finds the snapshots a new owner starts from (the table's, recovered by Faust
    before the streams resume); ``persist`` writes one snapshot and calls ``delivered`` once it
    is acknowledged, or ``failed``. Both are set by the worker (agents.stats_ledger); left unset
    (tests of the routing alone) nothing is loaded and every snapshot counts as delivered.
    """

    def __init__(self, writer: str = "", clock: Callable[[], float] = time.time) -> None:
        self.writer = writer
        self._clock = clock
        self.load: Callable[[Source], list[Snapshot]] = lambda source: []
        self.persist: Callable[[SourceCounts, Snapshot], None] = lambda state, snap: self.delivered(
            state, snap[COVERED]
        )
        self._sources: dict[Source, SourceCounts] = {}
        # The partitions this worker lost, as they were: a rebalance revokes every partition and
        # assigns most of them again, with a record perhaps still in hand. Taken up again when
        # nobody counted further meanwhile, so that record counts once and is acked.
        self._left: dict[Source, SourceCounts] = {}
        # Counts made outside any record (none are expected): kept and published, never lost.
        self.unowned = FrameCounters()
        self._discard = _Discard()
        self._current: contextvars.ContextVar[FrameCounters] = contextvars.ContextVar("frame_counters")

    # --- the hot path: one record ------------------------------------------------------------
    def current(self) -> FrameCounters:
        """The counters of the record this task is handling."""
        return self._current.get(self.unowned)

    def begin(self, source: Source, offset: int) -> tuple[SourceCounts, contextvars.Token[FrameCounters]]:
        """A record starts: its counts go to its partition, or nowhere when already counted."""
        state = self._sources.get(source)
        if state is None:
            state = self._assigned(source)
        if offset <= state.covered or state.dropped:
            return state, self._current.set(self._discard)
        if offset != state.covered + 1 and state.covered >= 0:
            log.warning(
                "counts of %s: offset %d follows %d, the offsets between uncounted",
                source_name(source),
                offset,
                state.covered,
            )
        state.busy = True
        return state, self._current.set(state.counters)

    def end(self, state: SourceCounts, offset: int, token: contextvars.Token[FrameCounters]) -> None:
        """The record was handled in full: its counts are in, up to its offset."""
        self._current.reset(token)
        if not state.busy:
            return
        state.busy = False
        if offset > state.covered:
            state.covered = offset
        if state.wanted and not state.dropped:
            state.wanted = False
            self._take(state)

    def abandon(self, state: SourceCounts, token: contextvars.Token[FrameCounters]) -> None:
        """The record failed half counted: the partition's counts stop here (never snapshotted
        again), and it is counted afresh from its last delivered snapshot by whoever restarts it."""
        self._current.reset(token)
        state.busy = False
        state.dropped = True

    def ack(self, state: SourceCounts, offset: int, ack: Ack) -> None:
        """Everything the record led to is delivered: ack it once a delivered snapshot counts it."""
        if offset <= state.durable:
            ack()
        elif not state.dropped:
            state.acks.append((offset, ack))

    # --- snapshots ------------------------------------------------------------------------------
    def flush(self) -> None:
        """Snapshot every partition that counted more since its last snapshot (a timer calls this).
        Partitions lost too: a record in hand when its partition was revoked counts there, and the
        partition may not be counted again here soon (or ever: the snapshot then just loses)."""
        for state in [*self._sources.values(), *self._left.values()]:
            if state.dropped or state.covered <= state.snapped:
                continue
            if state.busy:
                state.wanted = True
            else:
                self._take(state)

    def delivered(self, state: SourceCounts, covered: int) -> None:
        if covered > state.durable:
            state.durable = covered
        acks = state.acks
        while acks and acks[0][0] <= state.durable:
            acks.popleft()[1]()

    def failed(self, state: SourceCounts, covered: int) -> None:
        """A snapshot was not delivered: the next flush takes one again."""
        if state.snapped == covered:
            state.snapped = state.durable

    def revoked(self, sources: Iterable[Source]) -> None:
        """Partitions this worker lost: their next owner counts them, this worker perhaps."""
        for source in sources:
            state = self._sources.pop(source, None)
            if state is not None and not state.dropped:
                self._left[source] = state

    # --- reading ----------------------------------------------------------------------------
    def snapshots(self) -> dict[str, Snapshot]:
        """The last snapshot of every partition counted here, by source name, for the system-wide
        stats. Those of partitions lost stay: a partition revoked and assigned again (every
        rebalance revokes all) is not counted anew until its next record, and its counts must not
        vanish from the stats meanwhile; a newer owner's snapshot covers more and wins anyway."""
        found = {source_name(s): st.last for s, st in self._left.items() if st.last is not None}
        found.update(
            {source_name(s): st.last for s, st in self._sources.items() if st.last is not None and not st.dropped}
        )
        return found

    def totals(self) -> FrameCounters:
        """This worker's counts of the partitions it owns, and any made outside a record."""
        total = FrameCounters()
        for state in self._sources.values():
            total.add(state.counters.snapshot())
        total.add(self.unowned.snapshot())
        return total

    # --- inside -------------------------------------------------------------------------------
    def _assigned(self, source: Source) -> SourceCounts:
        start = best(self.load(source))
        covered = int(start.get(COVERED, -1)) if start else -1
        left = self._left.pop(source, None)
        if left is not None:
            if left.covered >= covered:
                self._sources[source] = left
                return left
            left.dropped = True  # another worker counted further: its counts win
            left.acks.clear()
        # What was loaded is durable (it was read back from Kafka), and counts as snapped.
        state = SourceCounts(source, counters_from(start), covered, covered, covered)
        state.last = dict(start) if start else None
        self._sources[source] = state
        return state

    def _take(self, state: SourceCounts) -> None:
        snap: Snapshot = {
            "source": source_name(state.source),
            COVERED: state.covered,
            AT: self._clock(),
            "writer": self.writer,
            **state.counters.snapshot(),
        }
        state.snapped = state.covered
        state.last = snap
        self.persist(state, snap)
