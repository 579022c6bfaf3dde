"""Microseconds per routing decision of agents.routing.Router, with 50 registered processors.

Measured the way the routing agent uses it: ``route()`` for one capability of one frame,
then ``record_sent()`` for the chosen processor, and for stateful capabilities the
camera's affinity map read before and written back after a move. Cameras and
capabilities cycle through precomputed lists so the loop itself costs little.
"""

from __future__ import annotations

import random
import statistics
import time
from typing import Any

from agents.routing import Action, ProcessorView, Router
from core.levels import Level

PROCESSORS = 50
CAPABILITIES = 10
CAPS_PER_PROCESSOR = 3
CAMERAS = 1000


def make_views(stateful: bool, rng: random.Random) -> list[ProcessorView]:
    """50 processors, 3 of 10 capabilities each, uneven capacities and lags, a few ELEVATED or CRITICAL."""
    caps = [f"cap-{i}" for i in range(CAPABILITIES)]
    views = []
    for i in range(PROCESSORS):
        offered = frozenset(caps[(i + k * 3) % CAPABILITIES] for k in range(CAPS_PER_PROCESSOR))
        capacity = rng.choice((500, 1000, 2000, 5000))
        lag = rng.randrange(0, capacity // 2)
        level = Level.CRITICAL if i % 17 == 16 else Level.ELEVATED if i % 7 == 6 else Level.NORMAL
        views.append(
            ProcessorView(
                id=f"proc-{i:02d}",
                capabilities=offered,
                capacity=capacity,
                stateful=stateful,
                healthy=i % 23 != 22,
                lag=lag,
                level=level,
                sampled_at=1.0,
            )
        )
    return views


def _workload(rng: random.Random, n: int) -> list[tuple[str, str]]:
    caps = [f"cap-{i}" for i in range(CAPABILITIES)]
    cams = [f"cam-{i:04d}" for i in range(CAMERAS)]
    return [(rng.choice(caps), rng.choice(cams)) for _ in range(n)]


def _run(router: Router, work: list[tuple[str, str]], affinity: dict[str, dict[str, str]]) -> int:
    """One pass over ``work``; returns the pass's duration in ns."""
    route = router.route
    record_sent = router.record_sent
    send = Action.SEND
    empty: dict[str, str] = {}
    started = time.perf_counter_ns()
    for cap, cam in work:
        current = affinity.get(cam, empty)
        decision = route((cap,), cam, 1, current)[0]
        if decision.action is send:
            pid = decision.processor_id
            assert pid is not None
            record_sent(pid, 0.0)
            if decision.new_affinity:
                affinity[cam] = {**current, cap: pid}
    return time.perf_counter_ns() - started


def _single_call_percentiles(router: Router, work: list[tuple[str, str]], affinity: dict[str, dict[str, str]]) -> Any:
    samples = []
    clock = time.perf_counter_ns
    empty: dict[str, str] = {}
    for cap, cam in work:
        current = affinity.get(cam, empty)
        t0 = clock()
        decision = router.route((cap,), cam, 1, current)[0]
        if decision.action is Action.SEND and decision.processor_id is not None:
            router.record_sent(decision.processor_id, 0.0)
        samples.append(clock() - t0)
        if decision.new_affinity and decision.processor_id is not None:
            affinity[cam] = {**current, cap: decision.processor_id}
    samples.sort()
    n = len(samples)
    return {
        "p50_us": samples[n // 2] / 1000,
        "p99_us": samples[min(n - 1, int(n * 0.99))] / 1000,
    }


def measure(stateful: bool, decisions: int, repeats: int, seed: int = 7) -> dict[str, Any]:
    rng = random.Random(seed)
    views = make_views(stateful, rng)
    router = Router(default_capabilities=(), affinity_epsilon=0.25, protected_priority=8, rng=random.Random(seed))
    router.update_view(views)
    work = _workload(rng, decisions)
    affinity: dict[str, dict[str, str]] = {}
    _run(router, work[: max(1, decisions // 10)], affinity)  # warm caches and affinities
    means = []
    for _ in range(repeats):
        # A fresh lag sample per pass, as the worker gets once a second: sent counters restart.
        router.update_view([_resampled(v, rng) for v in views])
        means.append(_run(router, work, affinity) / decisions / 1000)
    update_ns = []
    for _ in range(50):
        fresh = [_resampled(v, rng) for v in views]
        t0 = time.perf_counter_ns()
        router.update_view(fresh)
        update_ns.append(time.perf_counter_ns() - t0)
    single = _single_call_percentiles(router, work[: min(decisions, 50_000)], affinity)
    return {
        "mode": "stateful" if stateful else "stateless",
        "processors": PROCESSORS,
        "capabilities": CAPABILITIES,
        "cameras": CAMERAS,
        "decisions_per_pass": decisions,
        "passes": repeats,
        "mean_us": statistics.median(means),
        "best_pass_us": min(means),
        "p50_us": single["p50_us"],
        "p99_us": single["p99_us"],
        "decisions_per_second": 1e6 / statistics.median(means),
        "update_view_us": statistics.median(update_ns) / 1000,
    }


def _resampled(view: ProcessorView, rng: random.Random) -> ProcessorView:
    return ProcessorView(
        id=view.id,
        capabilities=view.capabilities,
        capacity=view.capacity,
        stateful=view.stateful,
        healthy=view.healthy,
        lag=rng.randrange(0, view.capacity // 2),
        level=view.level,
        sampled_at=time.monotonic(),
    )


def run(decisions: int, repeats: int) -> list[dict[str, Any]]:
    return [measure(stateful, decisions, repeats) for stateful in (False, True)]


if __name__ == "__main__":
    import json

    print(json.dumps(run(100_000, 5), indent=2))
