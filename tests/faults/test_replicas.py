"""Replicas share a processor id: stopping one must not deregister the id its siblings serve
(one worker, two SDK replicas, real servers)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
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
FRAMES = 200


@pytest.fixture
def cluster(make_settings: Any, tmp_path: Path) -> Iterator[Cluster]:
    # A replica window (interval x misses) longer than any wait below: a replica that never
    # deregistered cannot pass for one that did by falling silent.
    settings: Settings = make_settings(heartbeat_interval=1.0, heartbeat_misses=30, lag_sample_interval=0.5)
    c = Cluster(settings, tmp_path / "logs")
    yield c
    c.close()


async def test_stopping_one_replica_keeps_the_id_routed_to_its_sibling(cluster: Cluster) -> None:
    settings = cluster.settings
    worker, url = cluster.worker("worker")
    await wait_ready(url, proc=worker)
    argv = [
        sys.executable,
        "-m",
        "sample_processors",
        "detector",
        "det",
        "--capabilities",
        "motion",
        "--latency-ms",
        "1",
        "--capacity",
        "5000",
    ]
    replicas = [cluster.spawn(f"det-{n}", argv, orchestrator_url=url, processor_metrics_port=0) for n in range(2)]

    async def replica_count() -> int:
        status, body = await http_json("GET", f"{url}/api/v1/processors/det")
        return len(body.get("replicas", {})) if status == 200 else 0

    await wait_until(lambda: _at_least(replica_count(), 2), 60, what="both replicas registered")
    assert replicas[0].stop(timeout=30) == 0, replicas[0].tail()

    # The SDK's DELETE may be answered 202 (accepted, not yet folded): the record follows.
    await wait_until(lambda: _at_most(replica_count(), 1), 15, what="the stopped replica gone")
    status, record = await http_json("GET", f"{url}/api/v1/processors/det")
    assert status == 200, "the id left with its first replica"
    assert record["status"] == "healthy" and len(record["replicas"]) == 1, record

    frames = [
        small_frame(f"r-{n}", f"cam-{n % 4}", n // 4, f"{settings.app_id}:px:{n}", ["motion"]) for n in range(FRAMES)
    ]
    await store_pixels(settings, frames)
    await produce_frames(settings, frames)
    results = await read_topic(
        settings, settings.results_topic, idle_seconds=5, max_seconds=90, until=lambda v: len(v) >= FRAMES
    )
    letters = await read_topic(settings, settings.dead_letter_topic, idle_seconds=1, max_seconds=5)
    assert not letters, {d["reason"] for d in letters}
    assert {r["frame_id"] for r in results} == {f.frame_id for f in frames}, cluster.logs()

    assert replicas[1].stop(timeout=30) == 0, replicas[1].tail()

    async def id_gone() -> bool:
        status, _ = await http_json("GET", f"{url}/api/v1/processors/det")
        return status == 404

    await wait_until(id_gone, 15, what="the id gone with its last replica")


async def _at_least(count: Any, n: int) -> bool:
    return bool(await count >= n)


async def _at_most(count: Any, n: int) -> bool:
    return bool(await count <= n)
