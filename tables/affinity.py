"""Camera affinity: camera id -> {capability: processor id} for stateful processors.

Keyed like the captured topic and with its partition count, so a camera's assignment
lives on the worker that routes that camera and moves with the partition on rebalance.
"""

from __future__ import annotations

from typing import Any

import faust

NAME = "camera_affinity"


def define_affinity(app: faust.App, partitions: int) -> Any:
    return app.Table(
        NAME,
        default=dict,
        partitions=partitions,
        help="Which stateful processor each camera sticks to, per capability.",
    )
