"""Frame count snapshots: "topic/partition@writer" -> the cumulative counts of that source
partition up to the offset they cover (core.ledger).

Written only to the changelog, by agents.stats_ledger, to the changelog partition numbered
like the source partition: every source topic it counts (captured, waiting, results, dead
letters) has captured_partitions partitions, so Faust assigns partition p of all of them and
of this changelog to one worker and recovers the snapshots before that worker's streams
resume. One key per writer, so a snapshot written late by a worker that lost the partition
sits beside the new owner's instead of replacing it; the one covering more wins. The name is
a wire contract: renaming it orphans the changelog.
"""

from __future__ import annotations

from typing import Any

import faust

NAME = "frame_counts"


def snapshot_key(source: str, writer: str) -> str:
    return f"{source}@{writer}"


def key_source(key: str) -> str:
    return key.rpartition("@")[0]


def define_frame_counts(app: faust.App, partitions: int) -> Any:
    return app.Table(
        NAME,
        default=None,
        partitions=partitions,
        help="Cumulative frame counts per source partition and writer, with the offset they cover.",
    )
