"""The leader's tick through the heartbeat path: its wire form and its table value. Pure.

Heartbeats travel from a worker's REST API through the control topic and the registry fold to
the registry's changelog, which the leader reads. When that path is slow (a CPU-starved worker
whose producer buffer is full) every heartbeat arrives late, and a lone processor, having no
peer to compare with, looked silent. So the leader sends a tick of its own the same way: the
control topic (keyed apart from every processor id, which cannot start with ``_``), folded by
fold_registry into the ``heartbeat_path`` GlobalTable. The newest tick that came back says up to
when the path has delivered; agents.health measures silence up to there.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

TICK_KEY = b"__heartbeat_path_tick__"
# The one key of the heartbeat_path table.
TABLE_KEY = "tick"


def tick_record(at: float, leader: str) -> bytes:
    """The value of a tick on the control topic: when the leader sent it, and who it is."""
    return json.dumps({"at": datetime.fromtimestamp(at, UTC).isoformat(), "leader": leader}).encode()


def fold_tick(value: bytes) -> dict[str, str]:
    """The table value of a tick read from the control topic; ValueError if it is not one."""
    try:
        raw = json.loads(value)
        at = datetime.fromisoformat(raw["at"])
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"not a heartbeat path tick: {exc}") from None
    if at.tzinfo is None:
        raise ValueError("not a heartbeat path tick: its time has no zone")
    return {"at": at.isoformat(), "leader": str(raw.get("leader", ""))}


def tick_time(value: Any) -> float | None:
    """Epoch seconds of a tick as the table holds it; None when there is none (yet)."""
    if not isinstance(value, dict) or "at" not in value:
        return None
    return datetime.fromisoformat(value["at"]).timestamp()
