"""Whether events go through a stage: what /ready calls a stuck routing agent. Pure: time is passed in."""

from __future__ import annotations


class ProgressWatch:
    """Whether events go through a stage. Pure: time is passed in."""

    __slots__ = ("_active", "_busy_since")

    def __init__(self) -> None:
        self._active = 0
        self._busy_since: float | None = None

    def entered(self, now: float) -> None:
        if self._active == 0:
            self._busy_since = now
        self._active += 1

    def left(self, now: float) -> None:
        self._active = max(0, self._active - 1)
        # Progress: the clock restarts for what is still in hand.
        self._busy_since = now if self._active else None

    def stuck_for(self, now: float) -> float:
        """Seconds the stage has held events without finishing one (0 when idle or moving)."""
        return 0.0 if self._busy_since is None else max(0.0, now - self._busy_since)
