"""The benchmark profiles: the same shape at three sizes.

``quick`` fits in two minutes and ``full`` in fifteen on the 2-core reference machine;
``smoke`` only proves the harness runs end to end (its numbers mean nothing).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.scenarios import Plan

OURS_1W = "ours-1w"
OURS_2W = "ours-2w"
NULL = "null"
RAW_KAFKA = "raw-kafka"
RAW_REDIS = "raw-redis"
FANOUT = "redis-fanout"
ALL_SYSTEMS = (OURS_1W, OURS_2W, NULL, RAW_KAFKA, RAW_REDIS, FANOUT)


@dataclass(frozen=True)
class Profile:
    name: str
    plan: Plan
    # Systems that only get the throughput measurement (the 2-worker run answers "does it scale").
    throughput_only: frozenset[str] = frozenset({OURS_2W})
    routing_decisions: int = 100_000
    routing_passes: int = 5
    # Frames for the worker-alone drain (bench.worker_drain); 0 skips it.
    drain_frames: int = 10_000
    systems: tuple[str, ...] = field(default=ALL_SYSTEMS)

    def plan_for(self, system: str) -> Plan:
        if system in self.throughput_only:
            return Plan(**{**self.plan.__dict__, "loads": [], "fanout_loads": [], "sustain_check": False})
        return self.plan


PROFILES = {
    "smoke": Profile(
        "smoke",
        Plan(
            throughput_frames=300,
            throughput_timeout=30,
            loads=[100.0, 400.0],
            fanout_loads=[100.0],
            load_seconds=0.5,
            drain_seconds=5,
            warmup_timeout=45,
        ),
        routing_decisions=2_000,
        routing_passes=2,
        drain_frames=300,
        systems=(OURS_1W, NULL, RAW_KAFKA, RAW_REDIS, FANOUT),
    ),
    "quick": Profile(
        "quick",
        Plan(
            throughput_frames=4_000,
            throughput_timeout=45,
            loads=[100.0, 1_000.0, 5_000.0],
            fanout_loads=[400.0],
            load_seconds=2.5,
            drain_seconds=6,
            warmup_timeout=60,
        ),
        routing_decisions=30_000,
        routing_passes=3,
        drain_frames=5_000,
    ),
    "full": Profile(
        "full",
        Plan(
            throughput_frames=30_000,
            throughput_timeout=150,
            loads=[100.0, 1_000.0, 2_500.0, 5_000.0, 10_000.0],
            fanout_loads=[400.0],
            load_seconds=10.0,
            drain_seconds=30,
            warmup_timeout=90,
            sustain_check=True,
        ),
        routing_decisions=200_000,
        routing_passes=5,
        drain_frames=30_000,
    ),
}
