"""A worker whose routing agent is stuck is live but not ready (real worker, real servers)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from tests.integration.cluster import (
    Cluster,
    http_json,
    produce_frames,
    small_frame,
    store_pixels,
    wait_ready,
    wait_until,
)

pytestmark = pytest.mark.integration
STUCK_AFTER = 3.0


@pytest.fixture
def cluster(make_settings: Any, tmp_path: Path) -> Iterator[Cluster]:
    # Heartbeats are not sent here: a long interval keeps the processor healthy meanwhile.
    settings: Settings = make_settings(
        heartbeat_interval=60.0, lag_sample_interval=0.5, routing_stuck_seconds=STUCK_AFTER
    )
    c = Cluster(settings, tmp_path / "logs")
    yield c
    c.close()


async def test_a_router_holding_a_protected_frame_is_live_but_not_ready(cluster: Cluster) -> None:
    settings = cluster.settings
    worker, url = cluster.worker("worker")
    await wait_ready(url, proc=worker)
    status, ready = await http_json("GET", f"{url}/ready")
    assert status == 200 and ready["routing_alive"] and ready["kafka"], ready

    # One frame fills a processor of capacity 1 that consumes nothing; the next protected
    # frame waits for room that never comes, and the agent routes nothing behind it.
    spec = {"id": "full", "capabilities": ["motion"], "capacity": 1}
    status, _ = await http_json("POST", f"{url}/api/v1/processors/register", spec)
    assert status == 201
    frames = [small_frame(f"p-{n}", "cam", n, f"px:{n}", ["motion"], priority=9) for n in range(3)]
    # With pixels: a held frame whose pixels are gone is dead-lettered, and nothing would hold.
    await store_pixels(settings, frames)
    await produce_frames(settings, frames)
    started = time.monotonic()

    async def not_ready() -> Any:
        status, body = await http_json("GET", f"{url}/ready", within=10)
        return body if status == 503 else None

    report = await wait_until(not_ready, 60, interval=0.5, what="/ready to fail")
    assert time.monotonic() - started >= STUCK_AFTER - 0.5
    assert report["routing_stuck_seconds"] >= STUCK_AFTER and report["routing_alive"], report
    assert report["kafka"] and report["redis"] and report["recovered"], report
    status, health = await http_json("GET", f"{url}/health")
    assert status == 503 and health["routing_stuck_seconds"] >= STUCK_AFTER
    status, live = await http_json("GET", f"{url}/live")
    assert status == 200 and live["live"] is True


async def test_a_router_that_routes_stays_ready_past_the_stuck_limit(cluster: Cluster) -> None:
    # The routing agent acks by hand, after deliveries: readiness must see its progress anyway.
    settings = cluster.settings
    worker, url = cluster.worker("worker")
    await wait_ready(url, proc=worker)
    spec = {"id": "roomy", "capabilities": ["motion"], "capacity": 100_000}
    status, _ = await http_json("POST", f"{url}/api/v1/processors/register", spec)
    assert status == 201
    await produce_frames(settings, [small_frame(f"r-{n}", "cam", n, f"px:{n}", ["motion"]) for n in range(20)])

    async def routed() -> Any:
        _, stats = await http_json("GET", f"{url}/api/v1/frames/stats")
        return stats if stats["routed"] >= 20 else None

    await wait_until(routed, 30, interval=0.2, what="20 routed frames")
    await asyncio.sleep(STUCK_AFTER + 1.0)
    status, ready = await http_json("GET", f"{url}/ready")
    assert status == 200 and ready["routing_stuck_seconds"] == 0.0, ready
