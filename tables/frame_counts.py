"""Frame count snapshots: "partition@writer" -> that writer's latest snapshot of each source
partition of that number ("topic/partition" -> cumulative counts and the offset they cover,
core.ledger).

Written only to the changelog, by agents.stats_ledger, to the changelog partition of that
number: every source topic counted (captured, waiting, results, dead letters) has
captured_partitions partitions, so Faust assigns partition p of all of them and of this
changelog to one worker and recovers the snapshots before that worker's streams resume. One
key per writer, so a snapshot written late by a worker that lost the partition sits beside
the new owner's instead of replacing it; the one covering more wins. The name is a wire
contract: renaming it orphans the changelog.
"""

from __future__ import annotations

from typing import Any

import faust

NAME = "frame_counts"


def snapshot_key(partition: int, writer: str) -> str:
    return f"{partition}@{writer}"


def key_partition(key: str) -> int | None:
    number = key.partition("@")[0]
    return int(number) if number.isdigit() else None


def define_frame_counts(app: faust.App, partitions: int) -> Any:
    return app.Table(
        NAME,
        default=None,
        partitions=partitions,
        help="Cumulative frame counts per source partition and writer, with the offset they cover.",
    )
