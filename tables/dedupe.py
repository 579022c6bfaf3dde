"""Dedupe batches: "partition:n" -> the (frame_id|capability, processor@origin, time) triples
one flush of agents.dedupe_index added.

The index itself lives in memory; this table is its changelog, written once per partition
and flush (not once per pair), and read back when a partition is assigned. Partitioned like
the captured topic, so a partition's batches live where its frames are routed.
"""

from __future__ import annotations

from typing import Any

import faust

NAME = "frame_dedupe_batches"


def define_dedupe(app: faust.App, partitions: int) -> Any:
    return app.Table(
        NAME,
        default=None,
        partitions=partitions,
        help="Batches of recently routed (frame_id, capability) pairs, per captured partition.",
    )
