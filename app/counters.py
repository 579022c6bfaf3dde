"""Monotonic frame counters of one worker boot, published to the worker_stats table.

Plain integers on the hot path (no await, no lock: one event loop); the stats timer
snapshots them. Totals across workers are sums over boots (see tables/worker_stats.py).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


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
    shed_by_camera: Counter[str] = field(default_factory=Counter)
    shed_by_reason: Counter[str] = field(default_factory=Counter)

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
        }


_SCALARS = ("captured", "routed", "processed", "shed", "deduplicated", "rerouted")
_MAPS = ("dead_lettered", "routed_by_processor", "processed_by_processor", "shed_by_camera", "shed_by_reason")


def sum_snapshots(snapshots: list[dict[str, Any]]) -> dict[str, Any]:
    """System-wide totals from every worker boot's last snapshot."""
    total: dict[str, Any] = {name: 0 for name in _SCALARS}
    maps: dict[str, Counter[str]] = {name: Counter() for name in _MAPS}
    for snap in snapshots:
        for name in _SCALARS:
            total[name] += int(snap.get(name, 0))
        for name in _MAPS:
            maps[name].update({k: int(v) for k, v in (snap.get(name) or {}).items()})
    total.update({name: dict(counter) for name, counter in maps.items()})
    return total
