"""Backpressure levels and keep-latest-per-camera shedding. Pure code: no I/O, no clocks.

Utilisation u = lag / capacity maps to a level. Going up is immediate, going down needs u to
fall a hysteresis margin below the threshold of the level being left, so a processor hovering
around a threshold does not flap between two levels once a second.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from app.settings import Settings

T = TypeVar("T")

SHED_REASON = "shed"
OVERFLOW_REASON = "shed_overflow"


class Level(IntEnum):
    NORMAL = 0
    ELEVATED = 1
    HIGH = 2
    CRITICAL = 3


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

    @classmethod
    def from_settings(cls, settings: Settings) -> Thresholds:
        return cls(
            elevated=settings.bp_elevated,
            high=settings.bp_high,
            critical=settings.bp_critical,
            hysteresis=settings.bp_hysteresis,
        )

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

    `capacity` is the lag budget (e.g. worker_concurrency_batch x partitions); negative
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


@dataclass(frozen=True, slots=True)
class Shed(Generic[T]):
    """An item the buffer let go of, and why; the caller dead-letters it with this reason."""

    camera_id: str
    frame_id: str
    item: T
    reason: str


class ShedBuffer(Generic[T]):
    """Keep-latest-per-camera waiting room for frames that cannot be sent yet.

    Only the newest frame of each camera waits: offering a newer one hands back the older
    one to be dead-lettered as "shed". At most `max_cameras` cameras wait; a frame of one
    more camera is handed back at once as "shed_overflow", so memory stays bounded.
    """

    __slots__ = ("_waiting", "max_cameras", "shed_by_camera", "shed_by_reason")

    def __init__(self, max_cameras: int = 100_000) -> None:
        if max_cameras < 1:
            raise ValueError(f"max_cameras must be >= 1, got {max_cameras}")
        self.max_cameras = max_cameras
        # Insertion order = the order cameras started waiting: drain serves the longest waiting first.
        self._waiting: dict[str, tuple[str, T]] = {}
        self.shed_by_camera: Counter[str] = Counter()
        self.shed_by_reason: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._waiting)

    def __contains__(self, camera_id: object) -> bool:
        return camera_id in self._waiting

    def __iter__(self) -> Iterator[tuple[str, str, T]]:
        for camera_id, (frame_id, item) in self._waiting.items():
            yield camera_id, frame_id, item

    def offer(self, camera_id: str, frame_id: str, item: T) -> Shed[T] | None:
        """Let `item` wait as its camera's newest frame; return what that pushed out, if anything."""
        current = self._waiting.get(camera_id)
        if current is None:
            if len(self._waiting) >= self.max_cameras:
                return self._count(Shed(camera_id, frame_id, item, OVERFLOW_REASON))
            self._waiting[camera_id] = (frame_id, item)
            return None
        self._waiting[camera_id] = (frame_id, item)
        if current[0] == frame_id:
            # A redelivery of the frame already waiting: same frame, nothing is lost.
            return None
        return self._count(Shed(camera_id, current[0], current[1], SHED_REASON))

    def drain(self, can_send: Callable[[T], bool]) -> list[T]:
        """Remove and return, oldest camera first, every waiting item `can_send` accepts."""
        ready: list[T] = []
        for camera_id, (_, item) in list(self._waiting.items()):
            if can_send(item):
                del self._waiting[camera_id]
                ready.append(item)
        return ready

    def pop(self, camera_id: str) -> T | None:
        entry = self._waiting.pop(camera_id, None)
        return None if entry is None else entry[1]

    def _count(self, shed: Shed[T]) -> Shed[T]:
        self.shed_by_camera[shed.camera_id] += 1
        self.shed_by_reason[shed.reason] += 1
        return shed
