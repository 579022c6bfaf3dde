"""The count ledger (core.ledger), pure: replays skipped, acks gated on delivered snapshots, no
snapshot of half a record, and exact counts through any sequence of owners, crashes and late
(zombie) snapshot deliveries."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from core.ledger import Ledger, Snapshot, SourceCounts, best, system_totals

SRC = ("frames.captured", 3)


def count_one(ledger: Ledger, offset: int, acked: list[int]) -> None:
    counts, token = ledger.begin(SRC, offset)
    ledger.current().captured += 1
    ledger.end(counts, offset, token)
    ledger.ack(counts, offset, lambda: acked.append(offset))


def held_ledger(start: list[Snapshot] | None = None) -> tuple[Ledger, list[tuple[SourceCounts, Snapshot]]]:
    """A ledger whose snapshots wait in the returned list until the test delivers them."""
    ledger = Ledger("w")
    taken: list[tuple[SourceCounts, Snapshot]] = []
    ledger.load = lambda source: list(start or [])
    ledger.persist = lambda state, snap: taken.append((state, snap))
    return ledger, taken


def test_a_record_some_snapshot_counts_is_not_counted_again() -> None:
    ledger, _ = held_ledger([{"source": "frames.captured/3", "covered": 4, "at": 1.0, "captured": 5}])
    acked: list[int] = []
    for offset in range(3, 8):  # the group's commit was at 2: 3 and 4 are replays
        count_one(ledger, offset, acked)
    assert ledger.totals().captured == 5 + 3
    assert acked == [3, 4]  # counted by a delivered snapshot already; 5..7 wait for one


def test_a_record_is_acked_only_once_a_delivered_snapshot_covers_it() -> None:
    ledger, taken = held_ledger()
    acked: list[int] = []
    for offset in range(3):
        count_one(ledger, offset, acked)
    ledger.flush()
    count_one(ledger, 3, acked)
    assert acked == [] and [snap["covered"] for _, snap in taken] == [2]
    state, snap = taken.pop()
    ledger.delivered(state, snap["covered"])
    assert acked == [0, 1, 2]
    ledger.flush()
    state, snap = taken.pop()
    ledger.failed(state, snap["covered"])  # lost: the next flush takes it again
    ledger.flush()
    state, snap = taken.pop()
    ledger.delivered(state, snap["covered"])
    assert acked == [0, 1, 2, 3]


def test_no_snapshot_is_taken_with_half_a_record_counted() -> None:
    ledger, taken = held_ledger()
    count_one(ledger, 0, [])
    counts, token = ledger.begin(SRC, 1)
    ledger.current().captured += 1  # the record is still being routed (an await in between)
    ledger.flush()
    assert taken == []  # due, but half of record 1 is in the counts
    ledger.current().routed += 1
    ledger.end(counts, 1, token)  # the snapshot that fell due meanwhile is taken now, whole
    assert [(snap["covered"], snap["captured"], snap["routed"]) for _, snap in taken] == [(1, 2, 1)]


def test_a_failed_record_stops_its_partitions_counts() -> None:
    ledger, taken = held_ledger()
    acked: list[int] = []
    count_one(ledger, 0, acked)
    counts, token = ledger.begin(SRC, 1)
    ledger.current().captured += 1
    ledger.abandon(counts, token)
    ledger.flush()
    assert [snap["covered"] for _, snap in taken] == []  # never a snapshot counting half of 1
    count_one(ledger, 2, acked)
    assert ledger.current() is ledger.unowned and ledger.unowned.captured == 0


def test_counts_outside_any_record_are_kept_apart() -> None:
    ledger = Ledger("w")
    ledger.current().captured += 1
    assert ledger.unowned.captured == 1 and ledger.totals().captured == 1


def test_two_tasks_count_into_their_own_records_partitions() -> None:
    import asyncio

    ledger = Ledger("w")
    other = ("frames.waiting", 3)

    async def handle(source: tuple[str, int], gate: asyncio.Event, release: asyncio.Event) -> None:
        counts, token = ledger.begin(source, 0)
        gate.set()
        await release.wait()  # the other task runs meanwhile
        ledger.current().shed += 1 if source == other else 0
        ledger.current().captured += 1 if source == SRC else 0
        ledger.end(counts, 0, token)

    async def both() -> None:
        g1, g2, release = asyncio.Event(), asyncio.Event(), asyncio.Event()
        t1 = asyncio.ensure_future(handle(SRC, g1, release))
        t2 = asyncio.ensure_future(handle(other, g2, release))
        await g1.wait()
        await g2.wait()
        release.set()
        await asyncio.gather(t1, t2)

    asyncio.run(both())
    ledger.flush()
    snaps = ledger.snapshots()
    assert (snaps["frames.captured/3"]["captured"], snaps["frames.captured/3"]["shed"]) == (1, 0)
    assert (snaps["frames.waiting/3"]["captured"], snaps["frames.waiting/3"]["shed"]) == (0, 1)


def test_the_best_snapshot_covers_the_most_and_stats_never_add_alternatives() -> None:
    old = {"source": "t/0", "covered": 9, "at": 5.0, "captured": 10}
    new = {"source": "t/0", "covered": 19, "at": 4.0, "captured": 20}
    assert best([old, new]) is new
    zombie_boot = {"sources": {"t/0": old}, "unowned": {}}
    owner_boot = {"sources": {"t/0": new, "t/1": {"covered": 0, "captured": 1}}, "unowned": {"captured": 2}}
    legacy_boot = {"boot_id": "v1", "captured": 3}
    assert system_totals([zombie_boot, owner_boot, legacy_boot, None])["captured"] == 20 + 1 + 2 + 3


def test_a_record_in_hand_across_a_rebalance_that_gives_its_partition_back_counts_once() -> None:
    ledger, taken = held_ledger()
    acked: list[int] = []
    count_one(ledger, 0, acked)
    counts, token = ledger.begin(SRC, 1)
    ledger.current().captured += 1
    ledger.revoked([SRC])  # every rebalance revokes all; this one gives the partition back
    ledger.current().routed += 1
    ledger.end(counts, 1, token)
    ledger.ack(counts, 1, lambda: acked.append(1))
    count_one(ledger, 2, acked)  # the stream goes on after the record in hand
    assert (ledger.totals().captured, ledger.totals().routed) == (3, 1)
    ledger.flush()
    state, snap = taken[-1]
    assert snap["covered"] == 2
    ledger.delivered(state, 2)
    assert acked == [0, 1, 2]


def test_a_partition_given_back_after_another_worker_counted_further_starts_from_its_snapshot() -> None:
    further = {"source": "frames.captured/3", "covered": 5, "at": 9.0, "captured": 6}
    ledger, _ = held_ledger()
    found: list[Snapshot] = []
    ledger.load = lambda source: list(found)
    count_one(ledger, 0, [])
    ledger.revoked([SRC])
    found.append(further)
    count_one(ledger, 6, [])
    assert ledger.totals().captured == 7


# --- exactness through any story of owners ---------------------------------------------------
OPS = st.sampled_from(
    ["record", "record", "record", "busy", "flush", "deliver", "commit", "crash", "zombie", "zombie_record", "back"]
)


@dataclass
class Owner:
    ledger: Ledger
    nxt: int = 0
    pending: deque[tuple[SourceCounts, Snapshot]] = field(default_factory=deque)
    acked: list[int] = field(default_factory=list)


@dataclass
class Story:
    """One source partition of ``n`` records, each counting one capture; its owners one after another."""

    n: int
    changelog: dict[str, Snapshot] = field(default_factory=dict)
    committed: int = -1
    owners: int = 0
    written: list[Snapshot] = field(default_factory=list)
    zombies: deque[Owner] = field(default_factory=deque)
    clock: Iterator[int] = field(default_factory=itertools.count)

    def owner(self) -> tuple[Owner, int]:
        """A new owner, and the offset it resumes from: the group's commit."""
        self.owners += 1
        owner = Owner(Ledger(f"w{self.owners}", clock=lambda: float(next(self.clock))))
        owner.ledger.load = lambda source: [dict(v) for v in self.changelog.values()]
        owner.ledger.persist = lambda state, snap: owner.pending.append((state, snap))
        return owner, self.committed + 1

    def deliver(self, owner: Owner) -> None:
        state, snap = owner.pending.popleft()
        self.changelog[f"{snap['source']}@{snap['writer']}"] = snap
        self.written.append(snap)
        owner.ledger.delivered(state, snap["covered"])

    def handle(self, owner: Owner, busy: bool = False, back: bool = False) -> None:
        """The owner's next record, counted and acked (its ack waits for a delivered snapshot).
        ``back``: a rebalance revokes the partition and gives it back while the record is in hand,
        and the stream goes on with the next record (as seen on Tansu) or from the group's commit."""
        offset = owner.nxt
        counts, token = owner.ledger.begin(SRC, offset)
        owner.ledger.current().captured += 1
        if busy:
            owner.ledger.flush()  # the timer, while the record awaits a send
        if back:
            owner.ledger.revoked([SRC])
        owner.ledger.end(counts, offset, token)
        owner.ledger.ack(counts, offset, lambda: owner.acked.append(offset))
        owner.nxt = self.committed + 1 if back and offset % 2 else owner.nxt + 1

    def run(self, ops: list[str]) -> Any:
        owner, owner.nxt = self.owner()
        for op in ops:
            if op in ("record", "busy", "back") and owner.nxt < self.n:
                self.handle(owner, busy=op == "busy", back=op == "back")
            elif op == "flush":
                owner.ledger.flush()
            elif op == "deliver" and owner.pending:
                self.deliver(owner)
            elif op == "commit":
                # As Faust commits: up to the last of the acked offsets that follow the commit unbroken.
                acked = set(owner.acked)
                while self.committed + 1 in acked:
                    self.committed += 1
            elif op == "crash":
                # Its undelivered snapshots may still reach Kafka later, and a frozen worker that
                # wakes goes on counting what it had fetched and writing snapshots (never commits).
                self.zombies.append(owner)
                owner, owner.nxt = self.owner()
            elif op == "zombie" and self.zombies:
                zombie = self.zombies[0]
                if zombie.pending:
                    self.deliver(zombie)
                else:
                    self.zombies.popleft()
            elif op == "zombie_record" and self.zombies and self.zombies[-1].nxt < self.n:
                self.handle(self.zombies[-1])
                self.zombies[-1].ledger.flush()
        while owner.nxt < self.n:
            self.handle(owner)
        owner.ledger.flush()
        while owner.pending:
            self.deliver(owner)
        return best(self.changelog.values())


@settings(max_examples=500, deadline=None)
@given(n=st.integers(0, 30), ops=st.lists(OPS, max_size=120))
def test_every_record_is_counted_exactly_once_whoever_owns_the_partition(n: int, ops: list[str]) -> None:
    story = Story(n)
    final = story.run(ops)
    # Every snapshot ever written counts each record up to its offset once: no replay twice, none missed.
    assert all(snap["captured"] == snap["covered"] + 1 for snap in story.written), story.written
    assert (final["captured"] if final else 0) == n
    assert len(story.changelog) <= story.owners


def test_a_late_snapshot_of_a_woken_worker_never_undoes_a_newer_owners_counts() -> None:
    story = Story(12)
    final = story.run(
        ["record"] * 3
        + ["flush", "deliver", "commit", "crash"]  # frozen at 2: the next owner resumes at 3
        + ["record"] * 6
        + ["flush", "deliver", "commit"]  # the new owner counted and committed up to 8
        + ["zombie_record", "zombie", "zombie"]  # the woken one writes its snapshot of 3 last
        + ["crash"]  # a third owner starts from the snapshot covering the most, not the latest
    )
    assert final is not None and final["captured"] == 12


def test_a_partition_revoked_and_not_yet_counted_again_stays_in_the_stats() -> None:
    ledger, _ = held_ledger()
    count_one(ledger, 0, [])
    ledger.flush()
    ledger.revoked([SRC])  # a rebalance revokes every partition, then assigns them again
    assert ledger.snapshots()["frames.captured/3"]["captured"] == 1
