"""The processor registry: processor id -> ProcessorRecord (as a JSON dict).

A GlobalTable, so every worker routes from the whole registry, and a restart recovers
it from the changelog topic ``{app id}-processors-changelog``. Written only by the
fold_registry agent from events on the control topic. The name is a wire contract.
"""

from __future__ import annotations

from typing import Any

import faust

NAME = "processors"


def define_registry(app: faust.App) -> Any:
    return app.GlobalTable(
        NAME,
        default=None,
        partitions=1,
        recovery_buffer_size=1,
        help="Registered processors: id -> record (capabilities, capacity, status, heartbeat).",
    )
