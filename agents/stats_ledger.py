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
from core.ledger import Snapshot, Source, SourceCounts, best, source_name
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
        # Keys of writers whose every snapshot another covers: deleted once, one record at a time.
        self._stale: dict[int, list[str]] = {}
        self._pruned: set[str] = set()

    def load(self, source: Source) -> list[Snapshot]:
        """Every writer's snapshot of the source found in the table, recovered before the stream resumed."""
        name = source_name(source)
        partition = source[1]
        by_writer = self._partition_keys(partition)
        found = {key.partition("@")[2]: v[name] for key, v in by_writer.items() if isinstance(v.get(name), dict)}
        log.info(
            "counts of %s start from %s", name, sorted((s.get("covered"), w) for w, s in found.items()) or "nothing"
        )
        self._prune(partition, by_writer)
        return list(found.values())

    def _partition_keys(self, partition: int) -> dict[str, dict[str, Any]]:
        return {
            key: value
            for key, value in self.table.items()
            if isinstance(key, str) and isinstance(value, dict) and key_partition(key) == partition
        }

    def _prune(self, partition: int, by_writer: dict[str, dict[str, Any]]) -> None:
        """Every boot of a worker writes under its own key, so each restart adds one per partition.
        A key none of whose snapshots is the best of its source can never win again: delete it."""
        winners: set[str] = set()
        names = {name for value in by_writer.values() for name, snap in value.items() if isinstance(snap, dict)}
        for name in names:
            held = {key: value[name] for key, value in by_writer.items() if isinstance(value.get(name), dict)}
            top = best(held.values())
            winners.update(key for key, snap in held.items() if snap is top)
        # Never this boot's own key: a snapshot of ours may be queued before the delete.
        mine = snapshot_key(partition, self.writer)
        stale = [key for key in by_writer if key not in winners and key not in self._pruned and key != mine]
        if stale:
            log.info("count snapshots of partition %d: %d outdated writers deleted", partition, len(stale))
            self._pruned.update(stale)
            self._stale.setdefault(partition, []).extend(stale)
            self._send(partition)

    def persist(self, state: SourceCounts, snap: Snapshot) -> None:
        partition = state.source[1]
        self._due.setdefault(partition, {})[snap["source"]] = (state, snap)
        self._send(partition)

    def _send(self, partition: int) -> None:
        if partition in self._in_flight:
            return  # sent when the record in flight settles
        due = self._due.pop(partition, None)
        if not due:
            self._send_tombstone(partition)
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

    def _send_tombstone(self, partition: int) -> None:
        stale = self._stale.get(partition)
        if not stale:
            return
        key = stale.pop()
        if not stale:
            del self._stale[partition]
        self._in_flight.add(partition)
        # "raw", as Faust's own deletes: a real tombstone, so compaction drops the key.
        fut = self.table.changelog_topic.send_soon(key=key, value=None, partition=partition, value_serializer="raw")

        def done(f: Any) -> None:
            self._in_flight.discard(partition)
            failure = f.exception() if not f.cancelled() else RuntimeError("cancelled")
            if failure is not None:
                # Harmless to keep: an outdated snapshot never wins; the next load tries again.
                log.warning("outdated count snapshot %s not deleted (%r)", key, failure)
                self._pruned.discard(key)
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
