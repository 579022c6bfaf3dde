"""Dead letters a processor writes itself show in /api/v1/frames/stats (real worker, real SDK)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from frame_buffer_sdk import Frame, ProcessorClient, RejectFrame
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


@pytest.fixture
def cluster(make_settings: Any, tmp_path: Path) -> Iterator[Cluster]:
    settings: Settings = make_settings(heartbeat_interval=1.0, lag_sample_interval=0.5)
    c = Cluster(settings, tmp_path / "logs")
    yield c
    c.close()


async def test_frames_a_processor_rejects_are_counted_in_the_stats(cluster: Cluster) -> None:
    settings = cluster.settings
    worker, url = cluster.worker("worker")
    await wait_ready(url, proc=worker)

    async def picky(frame: Frame) -> dict[str, Any]:
        if (frame.routed.sequence or 0) % 2:
            raise RejectFrame("odd_frame", "this processor takes even frames only")
        return {}

    client = ProcessorClient(settings.model_copy(update={"orchestrator_url": url}), "picky", ["motion"], picky)
    task = asyncio.create_task(client.run())
    try:
        await wait_until(lambda: client.record is not None, 30, what="registered")
        frames = [small_frame(f"s-{n}", "cam", n, f"{settings.app_id}:px:{n}", ["motion"]) for n in range(20)]
        await store_pixels(settings, frames)
        await produce_frames(settings, frames)

        async def counted() -> Any:
            _, stats = await http_json("GET", f"{url}/api/v1/frames/stats")
            return stats if stats["processor_dead_lettered"].get("odd_frame") == 10 else None

        stats = await wait_until(counted, 60, what="10 rejected frames in the stats")
        assert stats["processors"]["picky"]["dead_lettered"] == 10
        await wait_until(lambda: _processed(url, 10), 30, what="10 processed frames in the stats")
    finally:
        await asyncio.wait_for(client.stop(), timeout=30)
        await task


async def _processed(url: str, n: int) -> bool:
    _, stats = await http_json("GET", f"{url}/api/v1/frames/stats")
    return bool(stats["processed"] == n)
