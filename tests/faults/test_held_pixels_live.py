"""A protected frame held past the capture's pixel TTL is still processed with its pixels (issue 10,
item 10), end to end on real servers: a worker, a detector processor, Kafka and Redis.

The processor's topic gets a backlog of its own (routed frames written straight to it), so it is
CRITICAL for about ten seconds; a protected frame captured meanwhile is held by the router, and
its pixels, stored with a TTL of FRAME_TTL_SECONDS (4 s), would be gone before it is sent.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from core.settings import Settings
from frame_buffer_sdk.models import RoutedFrame
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
PID = "only"
TTL = 4
BACKLOG = 50
LATENCY_MS = 200.0  # the backlog keeps the processor CRITICAL for about BACKLOG x LATENCY_MS


@pytest.fixture
def cluster(make_settings: Any, tmp_path: Path) -> Iterator[Cluster]:
    settings: Settings = make_settings(
        heartbeat_interval=2.0,
        heartbeat_misses=5,
        stall_timeout=60.0,
        lag_sample_interval=0.5,
        processor_partitions=1,
        captured_partitions=1,
        frame_ttl_seconds=TTL,
    )
    c = Cluster(settings, tmp_path / "logs")
    yield c
    c.close()


async def backlog(settings: Settings, count: int) -> None:
    """Routed frames written straight to the processor's topic, with pixels that do not expire soon."""
    frames = [
        small_frame(f"{settings.app_id}-b{i}", "cam-b", i, f"{settings.app_id}:px:b{i}", [CAP]) for i in range(count)
    ]
    await store_pixels(settings, frames, ttl=600)
    now = datetime.now(UTC)
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for f in frames:
            routed = RoutedFrame(**f.model_dump(), processor_id=PID, capability=CAP, routed_at=now)
            await producer.send(settings.ready_topic(PID), routed.model_dump_json().encode(), key=b"cam-b")
        await producer.flush()
    finally:
        await producer.stop()


async def test_a_protected_frame_held_past_the_pixel_ttl_is_processed_with_its_pixels(cluster: Cluster) -> None:
    settings = cluster.settings
    worker, url = cluster.worker("worker-1")
    await wait_ready(url, proc=worker)
    argv = [sys.executable, "-m", "sample_processors", "detector", PID, "--capabilities", CAP]
    argv += ["--capacity", "10", "--latency-ms", str(LATENCY_MS), "--concurrency", "1"]
    cluster.spawn(f"proc-{PID}", argv, orchestrator_url=url)

    async def registered() -> bool:
        status, body = await http_json("GET", f"{url}/api/v1/processors/")
        return status == 200 and [p["id"] for p in body] == [PID]

    await wait_until(registered, 60, what="the processor registered")
    await backlog(settings, BACKLOG)

    async def critical() -> bool:
        _, report = await http_json("GET", f"{url}/api/v1/backpressure")
        return bool(report["processors"].get(PID, {}).get("level") == "CRITICAL")

    await wait_until(critical, 20, interval=0.2, what="the processor CRITICAL")
    await asyncio.sleep(1.0)  # the worker's router refreshes its view every 0.5 s
    vip = small_frame(f"{settings.app_id}-vip", "cam-v", 0, f"{settings.app_id}:px:vip", [CAP], priority=9)
    await store_pixels(settings, [vip], ttl=TTL)
    await produce_frames(settings, [vip])

    def settled(values: list[Any]) -> bool:
        return any(v.get("frame_id") == vip.frame_id for v in values)

    async def outcome() -> tuple[list[Any], list[Any]] | None:
        results = await read_topic(settings, settings.results_topic, idle_seconds=0.5, max_seconds=5)
        letters = await read_topic(settings, settings.dead_letter_topic, idle_seconds=0.5, max_seconds=5)
        return (results, letters) if settled(results) or settled(letters) else None

    results, letters = await wait_until(outcome, 90, interval=1, what="the protected frame processed or dead-lettered")
    mine = [d for d in letters if d.get("frame_id") == vip.frame_id]
    assert mine == [], f"dead-lettered: {json.dumps(mine)}"
    assert [r["frame_id"] for r in results if r["frame_id"] == vip.frame_id] == [vip.frame_id]
    result = next(r for r in results if r["frame_id"] == vip.frame_id)
    # routed_at is stamped when the router took the record, before the hold. The frame came alone
    # after the backlog, so its pixels were read about one latency before it was processed.
    waited = (datetime.fromisoformat(result["processed_at"]) - vip.captured_at).total_seconds()
    assert waited > TTL + 1, f"processed after {waited:.1f} s: the test did not outlast the pixel TTL"
    assert not letters, f"unexpected dead letters: {[d['reason'] for d in letters]}"
