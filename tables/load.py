"""Processor load: processor id -> latest LoadReport (lag per partition, level, health).

A GlobalTable fed by the leader's lag sampler through the load-reports topic, so every
worker's router sees the same backlog numbers about once a second.
"""

from __future__ import annotations

from typing import Any

import faust

NAME = "processor_load"


def define_load(app: faust.App) -> Any:
    return app.GlobalTable(
        NAME,
        default=None,
        partitions=1,
        recovery_buffer_size=1,
        help="Per-processor commit lag of its consumer group, backpressure level and utilisation.",
    )
