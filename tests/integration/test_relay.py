"""detektr processors unchanged: registered over REST with a queue, fed through the relay, on real servers."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from agents.worker_timers import VIEW_REFRESH_SECONDS
from app.configs import relay_config
from core.settings import Settings
from relay.service import Relay
from tests.conftest import TEST_API_TOKEN
from tests.detektr import DetektrProcessor
from tests.integration.cluster import Cluster, produce_frames, small_frame, store_pixels, wait_ready, wait_until

pytestmark = pytest.mark.integration


async def test_a_detektr_processor_gets_every_frame_once_with_its_pixels(
    make_settings: Callable[..., Settings], unique: str, tmp_path: Path
) -> None:
    settings = make_settings(heartbeat_interval=1.0)
    cluster = Cluster(settings, tmp_path / "logs")
    worker, url = cluster.worker("worker-1")
    relay = Relay(relay_config(settings))
    relaying = asyncio.create_task(relay.serve())
    pid = f"det-{unique}"
    # detektr's client is configured, not changed: the API token rides in its orchestrator URL.
    with_token = url.replace("http://", f"http://detektr:{TEST_API_TOKEN}@")
    processor = DetektrProcessor(pid, with_token, ["object_detection"], settings.redis_url)
    redis = aioredis.from_url(settings.redis_url)
    try:
        await wait_ready(url, proc=worker)
        await processor.start()
        assert processor.register_status == 201, processor.register_reply
        assert processor.register_reply["queue"] == f"frames:ready:{pid}"
        await asyncio.sleep(2 * VIEW_REFRESH_SECONDS)  # each router re-reads the registry this often

        frames = [
            small_frame(f"f-{n}", f"cam-{n % 3}", n, f"px:{unique}:{n}", ["object_detection"], priority=n % 10)
            for n in range(30)
        ]
        await store_pixels(settings, frames)
        await produce_frames(settings, frames)
        await wait_until(lambda: len(processor.received) >= len(frames), 60, what="frames in the Redis stream")
        await asyncio.sleep(1.0)  # duplicates would arrive now

        counts = Counter(fields[b"frame_id"].decode() for fields, _ in processor.received)
        assert set(counts) == {f.frame_id for f in frames} and max(counts.values()) == 1
        by_id = {f.frame_id: f for f in frames}
        for fields, pixels in processor.received:
            frame = by_id[fields[b"frame_id"].decode()]
            assert pixels == await redis.get(frame.frame_key or "") and pixels is not None
            assert fields[b"storage_path"].decode() == frame.frame_key
            assert fields[b"storage_backend"] == b"redis"
            assert (fields[b"width"], fields[b"height"], fields[b"format"]) == (b"8", b"8", b"gray8")
            assert (fields[b"size_bytes"], fields[b"priority"]) == (b"64", str(frame.priority).encode())
            assert fields[b"camera_id"].decode() == frame.camera_id
            assert datetime.fromisoformat(fields[b"timestamp"].decode()) == frame.captured_at
            assert isinstance(json.loads(fields[b"trace_context"]), dict)
            assert isinstance(json.loads(fields[b"metadata"]), dict)
        pending = await redis.xpending(f"frames:ready:{pid}", "frame-processors")
        assert pending["pending"] == 0
        assert relay.deliveries[pid][0].delivered == len(frames)
        assert await processor.stop() == 204
        await wait_until(lambda: pid not in relay.deliveries, 30, what="the relay to let go of the deregistered")
    finally:
        relay.request_stop()
        await relaying
        await relay.close()
        await redis.delete(f"frames:ready:{pid}")
        await redis.aclose()
        cluster.close()
