"""Worker counters: worker boot id -> counter snapshot (captured, routed, processed, ...).

Each worker publishes its own monotonic counters about once a second; totals are the sum
over all boots, so any worker answers /api/v1/frames/stats for the whole system.
"""

from __future__ import annotations

from typing import Any

import faust

NAME = "worker_stats"


def define_worker_stats(app: faust.App) -> Any:
    return app.GlobalTable(
        NAME,
        default=None,
        partitions=1,
        recovery_buffer_size=1,
        help="Per-worker-boot frame counters, summed for the system-wide stats.",
    )
