"""Persisting the ledger's count snapshots (core.ledger) to the frame_counts changelog, and
reading them back when a partition is assigned.

Snapshots are sent by a timer every SNAPSHOT_SECONDS per partition that counted more, never
per record, and straight to the changelog partition numbered like the source partition:
Faust's own table write needs the current event's partition (its RocksDB store even for the
local copy), which a timer does not have. The local store is left to Faust's recovery, which
reads the changelog whenever the partition is assigned; while it owns the partition the
worker's counts live in the ledger. A snapshot's delivery releases the acks of the records
it covers, so the group's commit waits at most a snapshot interval plus a delivery for it.
"""

from __future__ import annotations

import logging
from typing import Any

from core.context import Orchestrator
from core.ledger import Snapshot, Source, SourceCounts, source_name
from tables.frame_counts import key_source, snapshot_key

log = logging.getLogger(__name__)
SNAPSHOT_SECONDS = 0.2


class SnapshotStore:
    """The frame_counts table as the ledger's load and persist."""

    def __init__(self, orch: Orchestrator) -> None:
        self.orch = orch
        self.table = orch.tables.frame_counts
        # Other writers' snapshots of a partition found on its assignment: key -> covered.
        self._stale: dict[Source, dict[str, int]] = {}

    def load(self, source: Source) -> list[Snapshot]:
        """Every snapshot of the partition found in the table, recovered before the stream resumed."""
        name = source_name(source)
        mine = snapshot_key(name, self.orch.boot_id)
        found: dict[str, Snapshot] = {}
        for key, value in self.table.items():
            if isinstance(key, str) and isinstance(value, dict) and key_source(key) == name:
                found[key] = value
        if found:
            log.info("counts of %s start from %d snapshot(s)", name, len(found))
        self._stale[source] = {k: int(v.get("covered", -1)) for k, v in found.items() if k != mine}
        return list(found.values())

    def persist(self, state: SourceCounts, snap: Snapshot) -> None:
        covered = snap["covered"]
        ledger = self.orch.stats
        fut = self.table.changelog_topic.send_soon(
            key=snapshot_key(snap["source"], snap["writer"]), value=snap, partition=state.source[1]
        )

        def done(f: Any) -> None:
            if f.cancelled() or f.exception() is not None:
                log.warning("count snapshot of %s not delivered (%r): taken again", snap["source"], f.exception())
                ledger.failed(state, covered)
            else:
                ledger.delivered(state, covered)
                self._prune(state.source, covered)

        fut.add_done_callback(done)

    def _prune(self, source: Source, durable: int) -> None:
        """Tombstones for the other writers' snapshots that a delivered one of ours covers, so the
        table keeps a key or two per partition, not one per boot that ever owned it. Never
        before: until ours is delivered, theirs is the only record of those counts."""
        stale = self._stale.get(source)
        if not stale:
            return
        for key in [k for k, covered in stale.items() if covered <= durable]:
            del stale[key]
            self.table.changelog_topic.send_soon(key=key, value=None, partition=source[1])


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
