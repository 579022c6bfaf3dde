"""Backpressure, shedding and failover on real servers, counted exactly (issue 4 §8)."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from devtools.processes import ChildProcess
from frame_buffer_sdk.models import FrameEvent
from tests.integration.cluster import (
    Cluster,
    http_json,
    produce_frames,
    read_topic,
    small_frame,
    store_pixels,
    wait_ready,
    wait_until,
)

pytestmark = pytest.mark.integration
CAP = "object_detection"


async def results_of(
    settings: Settings, batch: list[FrameEvent], *, idle_seconds: float, max_seconds: float
) -> tuple[list[Any], Counter[str], set[str]]:
    """The results topic once every frame of ``batch`` has a result (or it went idle): the
    records, how often each frame was processed, and the frames with no result."""
    results = await read_topic(
        settings,
        settings.results_topic,
        idle_seconds=idle_seconds,
        max_seconds=max_seconds,
        until=lambda v: len({r["frame_id"] for r in v}) >= len(batch),
    )
    processed = Counter(r["frame_id"] for r in results)
    return results, processed, {f.frame_id for f in batch} - set(processed)


@pytest.fixture
def cluster(make_settings: Any, tmp_path: Path) -> Iterator[Cluster]:
    settings: Settings = make_settings(
        heartbeat_interval=2.0,
        heartbeat_misses=3,
        stall_timeout=20.0,
        lag_sample_interval=0.5,
        processor_partitions=2,
        captured_partitions=2,
    )
    c = Cluster(settings, tmp_path / "logs")
    yield c
    c.close()


def processor(cluster: Cluster, base_url: str, pid: str, capacity: int, latency_ms: float) -> ChildProcess:
    return cluster.spawn(
        f"proc-{pid}",
        [
            sys.executable,
            "-m",
            "sample_processors",
            "detector",
            pid,
            "--capabilities",
            CAP,
            "--capacity",
            str(capacity),
            "--latency-ms",
            str(latency_ms),
            "--concurrency",
            "1",
        ],
        orchestrator_url=base_url,
    )


def frames(prefix: str, count: int, cameras: int, protected_every: int = 0) -> list[FrameEvent]:
    return [
        small_frame(
            f"{prefix}-{i:05d}",
            f"cam-{i % cameras:02d}",
            i // cameras,
            f"{prefix}:px:{i}",
            [CAP],
            priority=9 if protected_every and i % protected_every == 0 else 0,
        )
        for i in range(count)
    ]


async def paced(settings: Settings, batch: list[FrameEvent], rate: float) -> None:
    """Offer frames at ``rate`` per second, in 0.1 s slices."""
    per_slice = max(1, int(rate / 10))
    for start in range(0, len(batch), per_slice):
        began = asyncio.get_running_loop().time()
        await produce_frames(settings, batch[start : start + per_slice])
        await asyncio.sleep(max(0.0, 0.1 - (asyncio.get_running_loop().time() - began)))


async def start(cluster: Cluster, procs: dict[str, tuple[int, float]]) -> str:
    worker, url = cluster.worker("worker-1")
    await wait_ready(url, proc=worker)
    for pid, (capacity, latency) in procs.items():
        processor(cluster, url, pid, capacity, latency)

    async def all_registered() -> bool:
        status, body = await http_json("GET", f"{url}/api/v1/processors/")
        return status == 200 and {p["id"] for p in body} == set(procs)

    await wait_until(all_registered, 60, what="processors registered")
    return url


async def test_slow_processor_backlog_stays_bounded_while_fast_peer_takes_the_rest(cluster: Cluster) -> None:
    settings = cluster.settings
    # Capacities as an operator sets them: what each can work off in a few seconds.
    capacity = 100
    url = await start(cluster, {"slow": (capacity, 100.0), "fast": (1000, 1.0)})  # slow: 10 frames/s
    batch = frames(settings.app_id, 1200, cameras=8)
    await store_pixels(settings, batch)
    peak: dict[str, int] = Counter()

    async def watch() -> None:
        while True:
            _, report = await http_json("GET", f"{url}/api/v1/backpressure")
            for pid, p in report["processors"].items():
                peak[pid] = max(peak[pid], p["lag"])
            await asyncio.sleep(0.25)

    watcher = asyncio.ensure_future(watch())
    await paced(settings, batch, rate=100)  # 10x what "slow" can do
    results, processed, missing = await results_of(settings, batch, idle_seconds=5, max_seconds=90)
    watcher.cancel()
    by_processor = Counter(r["processor_id"] for r in results)
    _, stats = await http_json("GET", f"{url}/api/v1/frames/stats")
    assert not missing, f"{len(missing)} not processed; by processor {by_processor}; stats {stats}"
    assert all(n == 1 for n in processed.values())
    assert 0 < peak["slow"] <= capacity, f"slow backlog peaked at {peak['slow']} (capacity {capacity})"
    assert by_processor["fast"] > 3 * by_processor["slow"], by_processor


async def test_all_saturated_sheds_only_unprotected_and_accounts_for_every_frame(cluster: Cluster) -> None:
    settings = cluster.settings
    url = await start(cluster, {"only": (20, 25.0)})  # about 40 frames/s
    batch = frames(settings.app_id, 1500, cameras=6, protected_every=10)
    await store_pixels(settings, batch)
    await paced(settings, batch, rate=300)
    ids = {f.frame_id for f in batch}
    protected = {f.frame_id for f in batch if f.priority >= settings.protected_priority}

    def accounted(results: list[Any], letters: list[Any]) -> set[str]:
        return {r["frame_id"] for r in results} | {d["frame_id"] for d in letters}

    async def settled() -> tuple[list[Any], list[Any]] | None:
        results = await read_topic(settings, settings.results_topic, idle_seconds=1, max_seconds=10)
        letters = await read_topic(settings, settings.dead_letter_topic, idle_seconds=1, max_seconds=10)
        return (results, letters) if accounted(results, letters) >= ids else None

    results, letters = await wait_until(settled, 120, interval=1, what="every frame processed or shed")
    processed = Counter(r["frame_id"] for r in results)
    lettered = Counter(d["frame_id"] for d in letters)
    shed = {d["frame_id"] for d in letters if d["reason"] == "shed"}
    assert all(n == 1 for n in processed.values()) and all(n == 1 for n in lettered.values())
    assert not set(processed) & set(lettered), "a frame both processed and dead-lettered"
    assert len(processed) + len(lettered) == len(batch)  # captured = processed + shed + dead-lettered
    assert set(lettered) == shed, Counter(d["reason"] for d in letters)
    assert protected <= set(processed), f"{len(protected - set(processed))} protected frames not processed"
    assert shed, "saturation never shed anything: the test did not saturate"
    _, stats = await http_json("GET", f"{url}/api/v1/frames/stats")
    await wait_until(lambda: _stats_settled(url, len(batch)), 20, what="stats counters")
    _, stats = await http_json("GET", f"{url}/api/v1/frames/stats")
    assert stats["captured"] == len(batch)
    assert stats["shed"] == len(shed) and sum(stats["shed_by_camera"].values()) == len(shed)
    assert stats["processed"] + stats["shed"] + sum(stats["dead_lettered"].values()) == len(batch)


async def _stats_settled(url: str, total: int) -> bool:
    _, stats = await http_json("GET", f"{url}/api/v1/frames/stats")
    return bool(stats["processed"] + stats["shed"] + sum(stats["dead_lettered"].values()) == total)


async def test_killed_processor_backlog_is_processed_elsewhere_once(cluster: Cluster) -> None:
    settings = cluster.settings
    url = await start(cluster, {"doomed": (400, 20.0), "survivor": (400, 2.0)})
    batch = frames(settings.app_id, 900, cameras=8)
    await store_pixels(settings, batch)
    producing = asyncio.ensure_future(paced(settings, batch, rate=150))

    async def doomed_has_backlog() -> bool:
        _, report = await http_json("GET", f"{url}/api/v1/backpressure")
        return bool(report["processors"].get("doomed", {}).get("lag", 0) >= 20)

    await wait_until(doomed_has_backlog, 60, what="a backlog on the doomed processor")
    next(p for p in cluster.procs if p.name == "proc-doomed").kill()
    await producing
    _, processed, missing = await results_of(settings, batch, idle_seconds=15, max_seconds=120)
    if missing:
        letters = await read_topic(settings, settings.dead_letter_topic, idle_seconds=1, max_seconds=10)
        why = Counter(d["reason"] for d in letters if d.get("frame_id") in missing)
        _, stats = await http_json("GET", f"{url}/api/v1/frames/stats")
        pytest.fail(f"{len(missing)} frames lost, e.g. {sorted(missing)[:5]}; dead letters {why}; stats {stats}")
    assert all(n == 1 for n in processed.values()), [f for f, n in processed.items() if n > 1][:10]
    _, report = await http_json("GET", f"{url}/api/v1/backpressure")
    assert report["processors"]["doomed"]["status"] in {"unhealthy", "stalled"}
