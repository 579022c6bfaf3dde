"""Dedupe window: "frame_id|capability" -> processor id the pair was routed to.

Windowed so it forgets after DEDUPE_WINDOW_SECONDS; partitioned like the captured topic
(a frame's duplicates arrive on its camera's partition). Storing the processor id, not a
flag, lets failover re-route a pair away from a dead processor exactly once.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import faust

NAME = "frame_dedupe"


def define_dedupe(app: faust.App, partitions: int, window_seconds: float) -> Any:
    window = timedelta(seconds=window_seconds)
    table = app.Table(
        NAME,
        default=str,
        partitions=partitions,
        help="Recently routed (frame_id, capability) pairs and where they went.",
    )
    # Two tumbling windows are checked on lookup (now and one window back), so a pair is
    # remembered for at least one full window whatever its phase.
    return table.tumbling(window, expires=window * 2).relative_to_now()
