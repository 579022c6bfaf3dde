"""The heartbeat path's own clock: "tick" -> the newest leader tick the registry fold got through.

The leader sends a tick on the control topic every sample (agents.path_tick); fold_registry
folds it here, as it folds heartbeats into the registry. A GlobalTable fed from the one-partition
control topic, so the leader reads the tick as it reads heartbeats. The name is a wire contract.
"""

from __future__ import annotations

from typing import Any

import faust

NAME = "heartbeat_path"


def define_heartbeat_path(app: faust.App) -> Any:
    return app.GlobalTable(
        NAME,
        default=None,
        partitions=1,
        recovery_buffer_size=1,
        help="The newest leader tick folded from the control topic: how far the heartbeat path has delivered.",
    )
