"""detektr processors unchanged: registered over REST with a queue, fed through the relay, on real servers."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY

from agents.worker_timers import VIEW_REFRESH_SECONDS
from app.configs import process_config, relay_config
from core.settings import Settings
from devtools.devstack import free_port
from frame_buffer_sdk.kafka import ensure_topics, start_reliable_producer
from frame_buffer_sdk.models import RoutedFrame
from relay.delivery import INVALID_REASON, Delivery
from relay.fields import DETEKTR_GROUP
from relay.queues import Queue
from relay.service import Relay, serve_metrics
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


def _sample(name: str, pid: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"processor_id": pid, **labels})


async def test_relay_metrics_count_frames_xadd_errors_commit_lag_and_the_redis_group(
    make_settings: Callable[..., Settings], unique: str
) -> None:
    """One delivery on real servers, into a stream that first refuses every XADD (its last id is
    the largest there is), then is made whole: the counters and gauges follow, and /metrics on
    RELAY_METRICS_PORT serves them."""
    settings = make_settings(relay_metrics_port=free_port())
    pid = f"det-metrics-{unique}"
    stream = f"frames:ready:{pid}"
    topic = settings.ready_topic(pid)
    await ensure_topics(settings.bootstrap_servers, [(topic, 1)])
    frames = [
        RoutedFrame(
            **small_frame(f"m-{n}", "cam-m", n, f"px:{unique}:{n}", ["object_detection"]).model_dump(),
            processor_id=pid,
            capability="object_detection",
            routed_at=datetime.now(UTC),
        )
        for n in range(6)
    ]
    sender = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    await sender.start()
    redis = aioredis.from_url(settings.redis_url)
    await redis.xadd(stream, {"x": "1"}, id="18446744073709551615-18446744073709551615")
    producer = await start_reliable_producer(settings.bootstrap_servers, f"relay-test-{unique}")
    delivery = Delivery(relay_config(settings), Queue(pid, stream, 100), redis, producer)
    running = asyncio.create_task(delivery.run())
    try:
        for frame in frames:
            await sender.send_and_wait(topic, frame.model_dump_json().encode(), key=frame.camera_id.encode())
        await wait_until(lambda: (_sample("frame_buffer_relay_xadd_errors_total", pid) or 0) >= 1, 30, what="errors")
        assert _sample("frame_buffer_relay_frames_relayed_total", pid) in (None, 0.0)
        await wait_until(lambda: _sample("frame_buffer_relay_commit_lag_frames", pid) == 6, 10, what="lag of 6")

        async with redis.pipeline(transaction=True) as pipe:  # whole again, group and all, at once
            pipe.delete(stream)
            pipe.xgroup_create(stream, DETEKTR_GROUP, id="0", mkstream=True)
            await pipe.execute()
        await sender.send_and_wait(topic, b"not a routed frame", key=b"cam-m")
        await wait_until(lambda: _sample("frame_buffer_relay_frames_relayed_total", pid) == 6, 30, what="6 relayed")

        def settled() -> bool:
            return (
                _sample("frame_buffer_relay_commit_lag_frames", pid) == 0
                and _sample("frame_buffer_relay_stream_unread_entries", pid) == 6
                and _sample("frame_buffer_relay_stream_pending_entries", pid) == 0
            )

        await wait_until(settled, 10, what="lag 0, 6 unread, none pending")
        lettered = _sample("frame_buffer_dead_lettered_total", pid, reason=INVALID_REASON, service="relay")
        assert lettered == 1

        # detektr's processor reads 4 and acknowledges 1: 2 unread, 3 pending.
        read = await redis.xreadgroup(DETEKTR_GROUP, "c1", {stream: ">"}, count=4)
        await redis.xack(stream, DETEKTR_GROUP, read[0][1][0][0])

        def read_some() -> bool:
            return (
                _sample("frame_buffer_relay_stream_unread_entries", pid) == 2
                and _sample("frame_buffer_relay_stream_pending_entries", pid) == 3
            )

        await wait_until(read_some, 10, what="2 unread, 3 pending")

        serve_metrics(process_config(settings, "relay", settings.relay_metrics_port))
        url = f"http://127.0.0.1:{settings.relay_metrics_port}/metrics"
        text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
        assert f'frame_buffer_relay_frames_relayed_total{{processor_id="{pid}"}} 6.0' in text
        assert f'frame_buffer_relay_stream_pending_entries{{processor_id="{pid}"}} 3.0' in text
        assert 'service="relay"' in text  # frame_buffer_build_info
    finally:
        delivery.stop.set()
        await running
        await sender.stop()
        await producer.stop()
        await redis.delete(stream)
        await redis.aclose()
    # Gone with the delivery: another relay reports this processor's gauges from now on.
    assert _sample("frame_buffer_relay_stream_unread_entries", pid) is None
    assert _sample("frame_buffer_relay_commit_lag_frames", pid) is None
