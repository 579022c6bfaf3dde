"""Monotonic frame counters of one source partition (core.ledger), and how snapshots add up.

Plain integers on the hot path (no await, no lock: one event loop); the ledger snapshots
them between records. System-wide totals are sums over partitions (app.web.frame_stats).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Camera ids are free-form: counts keyed by them are kept for this many, the rest add up
# under OTHER_CAMERAS, so neither memory nor the published snapshot grows without bound.
MAX_CAMERAS = 200
OTHER_CAMERAS = "(other)"


class BoundedCounter(Counter[str]):
    """A Counter of at most ``limit`` keys plus ``other``; new keys past the limit count as ``other``."""

    def __init__(self, limit: int = MAX_CAMERAS, other: str = OTHER_CAMERAS) -> None:
        super().__init__()
        self.limit = limit
        self.other = other

    def __setitem__(self, key: str, value: int) -> None:
        if key not in self and key != self.other and len(self) - (self.other in self) >= self.limit:
            key, value = self.other, self[self.other] + value
        super().__setitem__(key, value)

    def update(self, *args: Any, **kwargs: Any) -> None:
        counts: Counter[str] = Counter()
        counts.update(*args, **kwargs)
        for key, n in counts.items():
            if key in self or key == self.other or len(self) - (self.other in self) < self.limit:
                super().__setitem__(key, self[key] + n)
            else:
                super().__setitem__(self.other, self[self.other] + n)


@dataclass
class FrameCounters:
    captured: int = 0
    routed: int = 0
    processed: int = 0
    shed: int = 0
    deduplicated: int = 0
    rerouted: int = 0
    dead_lettered: Counter[str] = field(default_factory=Counter)
    routed_by_processor: Counter[str] = field(default_factory=Counter)
    processed_by_processor: Counter[str] = field(default_factory=Counter)
    shed_by_camera: Counter[str] = field(default_factory=BoundedCounter)
    shed_by_reason: Counter[str] = field(default_factory=Counter)
    # Dead letters processors wrote (frames routed, never processed), by reason and by processor.
    processor_dead_lettered: Counter[str] = field(default_factory=Counter)
    dead_lettered_by_processor: Counter[str] = field(default_factory=Counter)

    def add(self, snapshot: Mapping[str, Any]) -> None:
        """Add a snapshot's counts (a partition's starting point, or a sum)."""
        for name in _SCALARS:
            setattr(self, name, getattr(self, name) + int(snapshot.get(name, 0)))
        for name in _MAPS:
            getattr(self, name).update({k: int(v) for k, v in (snapshot.get(name) or {}).items()})

    def snapshot(self) -> dict[str, Any]:
        return {
            "captured": self.captured,
            "routed": self.routed,
            "processed": self.processed,
            "shed": self.shed,
            "deduplicated": self.deduplicated,
            "rerouted": self.rerouted,
            "dead_lettered": dict(self.dead_lettered),
            "routed_by_processor": dict(self.routed_by_processor),
            "processed_by_processor": dict(self.processed_by_processor),
            "shed_by_camera": dict(self.shed_by_camera),
            "shed_by_reason": dict(self.shed_by_reason),
            "processor_dead_lettered": dict(self.processor_dead_lettered),
            "dead_lettered_by_processor": dict(self.dead_lettered_by_processor),
        }


_SCALARS = ("captured", "routed", "processed", "shed", "deduplicated", "rerouted")
_MAPS = (
    "dead_lettered",
    "routed_by_processor",
    "processed_by_processor",
    "shed_by_camera",
    "shed_by_reason",
    "processor_dead_lettered",
    "dead_lettered_by_processor",
)


def sum_snapshots(snapshots: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """System-wide totals from one snapshot per source partition (and any unowned counts)."""
    total: dict[str, Any] = {name: 0 for name in _SCALARS}
    maps: dict[str, Counter[str]] = {name: Counter() for name in _MAPS}
    # Each partition keeps its own cameras; together they may name more, still a bounded set.
    maps["shed_by_camera"] = BoundedCounter()
    for snap in snapshots:
        for name in _SCALARS:
            total[name] += int(snap.get(name, 0))
        for name in _MAPS:
            maps[name].update({k: int(v) for k, v in (snap.get(name) or {}).items()})
    total.update({name: dict(counter) for name, counter in maps.items()})
    return total
