"""How the bridge answers the orchestrator's backpressure level: a pure decision, no I/O.

The orchestrator writes ``{"level": "NORMAL"|"ELEVATED"|"HIGH"|"CRITICAL", ...}`` to Redis.
NORMAL and ELEVATED run at full speed, HIGH slows the bridge down (smaller batches and a pause
between them), CRITICAL pauses reading new entries. A missing, expired or unreadable key is
NORMAL: the bridge must not stall because the orchestrator is not there to say so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from core.levels import Level


class State(StrEnum):
    RUNNING = "running"
    SLOWED = "slowed"
    PAUSED = "paused"


# Value of metrics.BRIDGE_THROTTLE for each state.
STATE_GAUGE = {State.RUNNING: 0, State.SLOWED: 1, State.PAUSED: 2}

SLOWED_BATCH_DIVISOR = 4
SLOWED_SLEEP_SECONDS = 0.2
PAUSED_RECHECK_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class Action:
    """What to do before the next XREADGROUP."""

    state: State
    batch_size: int  # entries to read; 0 when paused
    sleep_after: float  # seconds to wait after a batch (slowed) or before re-checking (paused)

    @property
    def reads(self) -> bool:
        return self.state is not State.PAUSED


def parse_level(raw: Any) -> Level:
    """The level inside the orchestrator's JSON; anything missing or unreadable is NORMAL."""
    if raw is None:
        return Level.NORMAL
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes | bytearray) else str(raw)
        doc = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return Level.NORMAL
    level = doc.get("level") if isinstance(doc, dict) else None
    if not isinstance(level, str):
        return Level.NORMAL
    try:
        return Level[level.upper()]
    except KeyError:
        return Level.NORMAL


def decide(level: Level, batch_size: int) -> Action:
    """Map a backpressure level to the bridge's next move."""
    if level is Level.CRITICAL:
        return Action(State.PAUSED, 0, PAUSED_RECHECK_SECONDS)
    if level is Level.HIGH:
        return Action(State.SLOWED, max(1, batch_size // SLOWED_BATCH_DIVISOR), SLOWED_SLEEP_SECONDS)
    return Action(State.RUNNING, batch_size, 0.0)
