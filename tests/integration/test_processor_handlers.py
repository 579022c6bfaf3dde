"""The SDK's handler kinds on real Kafka and Redis: a plain ``def`` processor, a batch processor,
a slow plain handler that keeps heartbeating, lifecycle hooks, and ResultsReader's dedupe."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer

from frame_buffer_sdk import Frame, ProcessorClient, ProcessorSettings, RejectFrame, ResultsReader
from frame_buffer_sdk.handlers import BatchItem
from frame_buffer_sdk.kafka import ensure_topics
from frame_buffer_sdk.models import FrameResult
from tests.integration.test_processor_sdk import CAMERAS, _produce, _read_all, _routed, _StubOrchestrator, _wait_until

pytestmark = pytest.mark.integration

MakeSettings = Callable[..., ProcessorSettings]


async def _frames(settings: ProcessorSettings, pid: str, count: int, partitions: int = 2) -> None:
    """``count`` routed frames (f-0..) with pixels ``bytes([seq]) * 8`` on ``pid``'s topic."""
    topic = settings.ready_topic(pid)
    outputs = [(settings.results_topic, settings.captured_partitions), (settings.dead_letter_topic, 1)]
    await ensure_topics(settings.bootstrap_servers, [(topic, partitions), *outputs])
    redis = aioredis.Redis.from_url(settings.redis_url)
    try:
        await redis.mset({f"{settings.app_id}:px:{s}": bytes([s]) * 8 for s in range(count)})
    finally:
        await redis.aclose()
    routed = [_routed(settings, pid, s, f"{settings.app_id}:px:{s}") for s in range(count)]  # type: ignore[arg-type]
    records = [(CAMERAS[s % 3], frame.model_dump_json().encode(), "c" * 32) for s, frame in enumerate(routed)]
    await _produce(settings, topic, records)  # type: ignore[arg-type]


async def _run_until_committed(client: ProcessorClient, committed: int) -> None:
    task = asyncio.create_task(client.run(register=False))
    try:
        await _wait_until(lambda: client.stats.committed >= committed or task.done(), 60, f"{committed} committed")
    finally:
        await asyncio.wait_for(client.stop(), timeout=30)
        await task


async def test_a_plain_def_processor_publishes_one_result_per_frame(make_settings: MakeSettings) -> None:
    settings = make_settings()
    frames = 12
    await _frames(settings, "plain", frames)
    threads: set[str] = set()

    def checksum(frame: Frame) -> dict[str, Any]:  # a plain def: no async anywhere
        threads.add(threading.current_thread().name)
        if frame.routed.sequence == 3:
            raise RejectFrame("unlucky", "three")
        return {"sum": sum(frame.pixels)}

    client = ProcessorClient(settings, "plain", ["checksum"], checksum, concurrency=2)
    await _run_until_committed(client, frames)

    results = [json.loads(r.value) for r in await _read_all(settings, settings.results_topic, frames - 1)]  # type: ignore[arg-type]
    dead = [json.loads(r.value) for r in await _read_all(settings, settings.dead_letter_topic, 1)]  # type: ignore[arg-type]
    assert sorted(d["frame_id"] for d in results) == sorted(f"f-{s}" for s in range(frames) if s != 3)
    assert all(d["result"] == {"sum": 8 * int(d["frame_id"][2:])} for d in results)
    assert [(d["frame_id"], d["reason"]) for d in dead] == [("f-3", "unlucky")]
    assert threads and threading.main_thread().name not in threads
    assert client.stats.processed == frames - 1 and not client.stats.dead_lettered.keys() - {"unlucky"}


async def test_a_batch_processor_gets_full_batches_and_answers_per_frame(make_settings: MakeSettings) -> None:
    settings = make_settings()
    frames = 30
    await _frames(settings, "gpu", frames)
    sizes: list[int] = []

    def detect_many(batch: list[Frame]) -> list[BatchItem]:  # a GPU detector's shape
        sizes.append(len(batch))
        return [
            RejectFrame("blurry", f"frame {f.frame_id}") if f.routed.sequence == 7 else {"seq": f.routed.sequence}
            for f in batch
        ]

    client = ProcessorClient(settings, "gpu", ["detect"], batch_process=detect_many, max_batch=8, max_wait_ms=300)
    await _run_until_committed(client, frames)

    results = [json.loads(r.value) for r in await _read_all(settings, settings.results_topic, frames - 1)]  # type: ignore[arg-type]
    dead = [json.loads(r.value) for r in await _read_all(settings, settings.dead_letter_topic, 1)]  # type: ignore[arg-type]
    assert sorted(d["frame_id"] for d in results) == sorted(f"f-{s}" for s in range(frames) if s != 7)
    assert all(d["result"] == {"seq": int(d["frame_id"][2:])} for d in results), "each result is its frame's"
    assert [(d["frame_id"], d["reason"]) for d in dead] == [("f-7", "blurry")]
    assert sum(sizes) == frames and max(sizes) == 8 and all(s <= 8 for s in sizes), sizes
    # The records were all there: waiting up to max_wait_ms fills batches rather than sending singles.
    assert len(sizes) <= 6, sizes


async def test_a_slow_plain_handler_keeps_heartbeating_and_hooks_run_around_the_run(
    make_settings: MakeSettings, unique: str
) -> None:
    pid = "slow"
    stub = _StubOrchestrator(topic=f"frames.ready.{unique}.{pid}", group=f"processor.{unique}.{pid}")
    await stub.start()
    order: list[str] = []
    slept = asyncio.Event()
    try:
        settings = make_settings(orchestrator_url=stub.url, heartbeat_interval=0.2)
        await _frames(settings, pid, 2, partitions=1)
        beats_while_sleeping: list[int] = []

        def heartbeats() -> int:
            return sum(1 for kind, _ in stub.calls if kind == "heartbeat")

        def load_model() -> None:  # a plain on_start, in a thread: the loop goes on meanwhile
            time.sleep(0.2)
            order.append("on_start")

        async def unload_model() -> None:
            order.append(f"on_stop after {stub.calls[-1][0]}")

        loop = asyncio.get_running_loop()

        def model(frame: Frame) -> dict[str, Any]:
            if frame.routed.sequence == 0:
                before = heartbeats()
                time.sleep(3.0)  # CPU-bound, for the loop's purposes
                beats_while_sleeping.append(heartbeats() - before)
                loop.call_soon_threadsafe(slept.set)
            return {"seq": frame.routed.sequence}

        client = ProcessorClient(settings, pid, ["slow"], model, on_start=load_model, on_stop=unload_model)
        task = asyncio.create_task(client.run())
        await _wait_until(lambda: bool(stub.calls), 20, "registration")
        assert order == ["on_start"], "on_start ran before registering"
        await asyncio.wait_for(slept.wait(), timeout=40)
        await _wait_until(lambda: client.stats.committed >= 2, 20, "both frames committed")
        await asyncio.wait_for(client.stop(), timeout=30)
        await asyncio.wait_for(task, timeout=5)
    finally:
        await stub.close()

    assert beats_while_sleeping and beats_while_sleeping[0] >= 8, "heartbeats every 0.2 s during a 3 s frame"
    assert order == ["on_start", "on_stop after delete"], "on_stop ran after draining and deregistering"
    results = [json.loads(r.value) for r in await _read_all(settings, settings.results_topic, 2)]  # type: ignore[arg-type]
    assert sorted(d["frame_id"] for d in results) == ["f-0", "f-1"], "no failover, no timeout: each once"


async def test_results_reader_drops_duplicates_and_commits_what_was_handled(make_settings: MakeSettings) -> None:
    settings = make_settings()
    await ensure_topics(settings.bootstrap_servers, [(settings.results_topic, settings.captured_partitions)])
    now = datetime.now(UTC)

    def result(frame: int, processor: str, capability: str = "detect") -> bytes:
        doc = FrameResult(
            frame_id=f"f-{frame}", camera_id=CAMERAS[frame % 3], processor_id=processor, capability=capability,
            captured_at=now, routed_at=now, processed_at=now, result={"by": processor},
        )  # fmt: skip
        return doc.model_dump_json().encode()

    # f-1 again from a peer (the at-least-once window), f-2 again from the same replica, one
    # record that is no result, and f-0 for a second capability (a different pair: kept).
    sent = [
        (0, result(0, "a")),
        (1, result(1, "a")),
        (2, result(2, "a")),
        (1, result(1, "b")),
        (2, result(2, "a")),
        (0, b"not json"),
        (0, result(0, "a", capability="faces")),
        (3, result(3, "a")),
    ]
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    await producer.start()
    try:
        for frame, value in sent:
            await producer.send_and_wait(settings.results_topic, value, key=CAMERAS[frame % 3].encode())
    finally:
        await producer.stop()

    got: list[tuple[str, str, str]] = []
    async with ResultsReader(settings, group=f"{settings.app_id}-alerts") as reader:
        async for item in reader:
            got.append((item.frame_id, item.capability, item.processor_id))
            if len(got) == 5:
                break
        # Nothing else is waiting: the duplicates and the bad record were skipped.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.__anext__(), timeout=2)
        assert (reader.duplicates, reader.invalid) == (2, 1)
    # The first copy of each pair is the one handed out (f-1 from "a", not the peer "b").
    assert sorted(got) == [
        ("f-0", "detect", "a"),
        ("f-0", "faces", "a"),
        ("f-1", "detect", "a"),
        ("f-2", "detect", "a"),
        ("f-3", "detect", "a"),
    ]

    # Everything handed out was committed: the group's next reader starts after it.
    async with ResultsReader(settings, group=f"{settings.app_id}-alerts") as again:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(again.__anext__(), timeout=8)
