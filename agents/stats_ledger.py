"""Persisting the ledger's count snapshots (core.ledger) to the frame_counts changelog, and
reading them back when a partition is assigned.

The ledger takes snapshots every SNAPSHOT_SECONDS per source partition that counted more, never
per record. Here they go straight to the changelog, one record per writer and partition number
holding that writer's snapshots of every source topic's partition of that number: Faust's own
table write needs the current event's partition (its RocksDB store even for the local copy),
which a timer does not have. The local store is left to Faust's recovery, which reads the
changelog whenever the partition is assigned; while it owns a partition the worker's counts
live in the ledger. A record's delivery releases the acks of the records its snapshots cover,
so the group's commit waits a snapshot interval plus a delivery at most, and never passes them.

One record in flight per changelog partition: each then travels in a batch of its own, and a
broker that reports a partition's end as its last batch's first offset plus one (Tansu's
ListOffsets) still gives Faust's recovery the true end, so a new owner reads the last snapshot.
"""

from __future__ import annotations

import logging
from typing import Any

from core.context import Orchestrator
from core.ledger import Snapshot, Source, SourceCounts, source_name
from tables.frame_counts import key_partition, snapshot_key

log = logging.getLogger(__name__)
SNAPSHOT_SECONDS = 0.2


class SnapshotStore:
    """The frame_counts table as the ledger's load and persist."""

    def __init__(self, orch: Orchestrator) -> None:
        self.orch = orch
        self.table = orch.tables.frame_counts
        self.writer = orch.boot_id
        # Per changelog partition: this writer's latest snapshot of each source, what waits to be
        # sent (source name -> its ledger state and snapshot), and whether a record is in flight.
        self._mine: dict[int, dict[str, Snapshot]] = {}
        self._due: dict[int, dict[str, tuple[SourceCounts, Snapshot]]] = {}
        self._in_flight: set[int] = set()

    def load(self, source: Source) -> list[Snapshot]:
        """Every writer's snapshot of the source found in the table, recovered before the stream resumed."""
        name = source_name(source)
        found: dict[str, Snapshot] = {}
        for key, value in self.table.items():
            if not isinstance(key, str) or not isinstance(value, dict) or key_partition(key) != source[1]:
                continue
            snap = value.get(name)
            if isinstance(snap, dict):
                found[key.partition("@")[2]] = snap
        log.info(
            "counts of %s start from %s", name, sorted((s.get("covered"), w) for w, s in found.items()) or "nothing"
        )
        return list(found.values())

    def persist(self, state: SourceCounts, snap: Snapshot) -> None:
        partition = state.source[1]
        self._due.setdefault(partition, {})[snap["source"]] = (state, snap)
        self._send(partition)

    def _send(self, partition: int) -> None:
        if partition in self._in_flight:
            return  # sent when the record in flight settles
        due = self._due.pop(partition, None)
        if not due:
            return
        mine = self._mine.setdefault(partition, {})
        mine.update({name: snap for name, (_, snap) in due.items()})
        self._in_flight.add(partition)
        fut = self.table.changelog_topic.send_soon(
            key=snapshot_key(partition, self.writer), value=dict(mine), partition=partition
        )
        ledger = self.orch.stats

        def done(f: Any) -> None:
            self._in_flight.discard(partition)
            failure = f.exception() if not f.cancelled() else RuntimeError("cancelled")
            for state, snap in due.values():
                if failure is None:
                    ledger.delivered(state, snap["covered"])
                else:
                    ledger.failed(state, snap["covered"])
            if failure is not None:
                log.warning("count snapshots of partition %d not delivered (%r): taken again", partition, failure)
            self._send(partition)

        fut.add_done_callback(done)


def register_stats_ledger(orch: Orchestrator) -> None:
    app = orch.app
    store = SnapshotStore(orch)
    orch.stats.load = store.load
    orch.stats.persist = store.persist

    @app.timer(SNAPSHOT_SECONDS, name="snapshot_counts")
    async def snapshot_counts() -> None:
        orch.stats.flush()

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def forget_counts(_: object, revoked: set[Any], **kwargs: object) -> None:
        orch.stats.revoked(revoked)
