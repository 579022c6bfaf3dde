"""Table recovery that survives a broker which lost its data, as Kafka Streams does.

A worker restarted on its old data directory against a broker whose changelogs were reset
(a new cluster, a wiped dev broker) finds local checkpoints past the changelog's end. Faust
then raises ConsistencyError and the worker never starts. Here that store partition is wiped
and restored from the changelog instead, with a WARNING naming the partition and both
offsets. With RECOVERY_CONSISTENCY_CHECK off (brokers that report a changelog's end too low,
such as Tansu) the checkpoint is trusted as Faust does: nothing is wiped, nothing is raised.

The hook is ``Recovery._build_offsets``, which Faust calls for the active and the standby
partitions of each rebalance, after the active highwaters are built and before its own
consistency check; faust-streaming is pinned, and tests/unit/test_table_recovery.py hashes
the upstream code this relies on.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from faust.stores.rocksdb import Store as RocksDBStore
from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.types import TP

log = logging.getLogger(__name__)


def past_the_end(offsets: Counter[TP], highwaters: dict[TP, int]) -> dict[TP, tuple[int, int]]:
    """Partitions whose checkpoint is past the changelog's last offset: tp -> (checkpoint, last).

    Both in Faust's terms: the last offset applied, and the highwater less one. A changelog
    with no highwater known, or a partition without a checkpoint, is not judged.
    """
    found: dict[TP, tuple[int, int]] = {}
    for tp, offset in offsets.items():
        last = highwaters.get(tp)
        if offset is not None and offset >= 0 and last is not None and offset > last:
            found[tp] = (offset, last)
    return found


def wipe_partition(store: Any, partition: int) -> int:
    """Delete every key (the checkpoint among them) of one partition of a table's store.

    Returns how many keys went. Stores that keep no checkpoint (memory://) never get here:
    their persisted offset is always None.
    """
    if not isinstance(store, RocksDBStore):
        raise TypeError(f"cannot wipe a partition of a {type(store).__name__}")
    db = store._db_for_partition(partition)
    keys = list(db.keys())
    for key in keys:
        del db[key]
    # Global tables cache key -> partition; entries naming the wiped partition would be stale.
    store._key_index.clear()
    return len(keys)


class ResettingRecovery(Recovery):
    """Recovery that restores a store partition from scratch when its checkpoint is past the end."""

    async def _build_offsets(self, consumer: Any, tps: Any, destination: Counter[TP], title: str) -> None:
        await super()._build_offsets(consumer, tps, destination, title)
        if not tps or not self.app.conf.recovery_consistency_check:
            return
        if title == "active":
            highwaters = dict(self.active_highwaters)
        else:
            # Standby highwaters are built only after this; the same rule needs them now.
            raw = await consumer.highwaters(*tps)
            highwaters = {tp: value - 1 for tp, value in raw.items() if value is not None}
        stale = past_the_end(Counter({tp: destination[tp] for tp in tps}), highwaters)
        if not stale:
            return
        earliest = await consumer.earliest_offsets(*stale)
        for tp, (checkpoint, last) in sorted(stale.items()):
            table: Any = self.tp_to_table[tp]
            removed = wipe_partition(table.data, tp.partition)
            start = earliest.get(tp)
            destination[tp] = start - 1 if start is not None else -1
            log.warning(
                "table %s: changelog %s partition %d ends at offset %d but the local store was at %d "
                "(the broker lost data); wiped the store partition (%d keys) and restoring it from the changelog",
                table.name,
                tp.topic,
                tp.partition,
                last,
                checkpoint,
                removed,
            )


class ResettingTableManager(TableManager):
    """Faust's table manager with ResettingRecovery (the App's ``TableManager`` setting)."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = ResettingRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery
