"""Backpressure levels. Pure code: no I/O, no clocks.

Utilisation u = lag / capacity maps to a level. Going up is immediate, going down needs u to
fall a hysteresis margin below the threshold of the level being left, so a processor hovering
around a threshold does not flap between two levels once a second.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from core.levels import Level


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Where each level starts, as utilisation, and the step-down margin."""

    elevated: float = 0.6
    high: float = 0.8
    critical: float = 0.95
    hysteresis: float = 0.05

    def __post_init__(self) -> None:
        if not 0 < self.elevated < self.high < self.critical:
            raise ValueError(f"thresholds must satisfy 0 < elevated < high < critical, got {self}")
        if not 0 <= self.hysteresis < self.elevated:
            raise ValueError(f"hysteresis must be in [0, elevated), got {self.hysteresis}")

    def start_of(self, level: Level) -> float:
        """The utilisation at which `level` begins (0 for NORMAL)."""
        if level is Level.CRITICAL:
            return self.critical
        if level is Level.HIGH:
            return self.high
        if level is Level.ELEVATED:
            return self.elevated
        return 0.0


def utilisation(lag: int | float, capacity: int | float) -> float:
    """lag / capacity with a negative lag (a broker quirk) clamped to 0."""
    if capacity <= 0:
        raise ValueError(f"capacity must be positive, got {capacity}")
    return max(0.0, float(lag)) / float(capacity)


def level_for(u: float, thresholds: Thresholds) -> Level:
    """The level of `u` without memory (no hysteresis)."""
    if math.isnan(u):
        raise ValueError("utilisation is NaN")
    if u >= thresholds.critical:
        return Level.CRITICAL
    if u >= thresholds.high:
        return Level.HIGH
    if u >= thresholds.elevated:
        return Level.ELEVATED
    return Level.NORMAL


def next_level(previous: Level, u: float, thresholds: Thresholds) -> Level:
    """The level after observing `u` when the level was `previous`."""
    raw = level_for(u, thresholds)
    if raw >= previous:
        return raw
    level = previous
    # Step down one level at a time: each level is left only below its own start - hysteresis.
    while level > Level.NORMAL and u < thresholds.start_of(level) - thresholds.hysteresis:
        level = Level(level - 1)
    return level


def router_level(
    partition_lags: Mapping[int, int], capacity: int, thresholds: Thresholds, previous: Level = Level.NORMAL
) -> Level:
    """The routing agents' own level from their commit lag on the captured topic.

    `capacity` is the lag budget (e.g. router_lag_budget x partitions); negative
    per-partition lags are clamped to 0 before summing.
    """
    total = sum(max(0, lag) for lag in partition_lags.values())
    return next_level(previous, utilisation(total, capacity), thresholds)


class LevelTracker:
    """Levels per processor id, each with its own hysteresis memory."""

    __slots__ = ("_levels", "thresholds")

    def __init__(self, thresholds: Thresholds) -> None:
        self.thresholds = thresholds
        self._levels: dict[str, Level] = {}

    def update(self, processor_id: str, u: float) -> Level:
        level = next_level(self._levels.get(processor_id, Level.NORMAL), u, self.thresholds)
        self._levels[processor_id] = level
        return level

    def level(self, processor_id: str) -> Level:
        return self._levels.get(processor_id, Level.NORMAL)

    def forget(self, processor_id: str) -> None:
        self._levels.pop(processor_id, None)

    def levels(self) -> dict[str, Level]:
        return dict(self._levels)
