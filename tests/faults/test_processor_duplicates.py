"""The SDK publishes each (frame, capability) once and never rewinds for ever (real Kafka, Redis)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from core.settings import Settings
from devtools.processes import settings_env
from frame_buffer_sdk import Frame, ProcessorClient
from frame_buffer_sdk.done import DoneMarkers
from frame_buffer_sdk.kafka import ensure_topics
from frame_buffer_sdk.pipeline import RESULT_TOO_LARGE, FramePipeline, PipelineConfig
from tests.integration.test_processor_sdk import ROOT, _produce, _read_all, _routed, _wait_until

pytestmark = pytest.mark.integration
PID = "checksum"
Process = Callable[[Frame], Awaitable[dict[str, Any]]]


@pytest.fixture
async def setup(make_settings: Callable[..., Settings]) -> AsyncIterator[tuple[Settings, aioredis.Redis]]:
    settings = make_settings()
    topic = settings.ready_topic(PID)
    outputs = [(settings.results_topic, settings.captured_partitions), (settings.dead_letter_topic, 1)]
    await ensure_topics(settings.bootstrap_servers, [(topic, 1), *outputs])
    redis = aioredis.Redis.from_url(settings.redis_url)
    yield settings, redis
    await redis.aclose()


async def produce(settings: Settings, redis: aioredis.Redis, seqs: list[int]) -> None:
    records = []
    for seq in seqs:
        key = f"{settings.app_id}:px:{seq}"
        await redis.set(key, bytes(8), ex=600)
        value = _routed(settings, PID, seq, key).model_dump_json().encode()
        records.append(("cam-a", value, f"{seq + 1:032x}"))
    await _produce(settings, settings.ready_topic(PID), records)


async def run_until_committed(settings: Settings, process: Process, committed: int) -> FramePipeline:
    config = PipelineConfig(PID, settings.ready_topic(PID), settings.processor_group(PID), max_batch=100)
    pipeline = FramePipeline(settings, config, process)
    await pipeline.start()
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    try:
        await _wait_until(lambda: pipeline.stats.committed >= committed or task.done(), 60, f"{committed} committed")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await pipeline.close()
    return pipeline


async def test_a_result_too_large_for_the_producer_is_dead_lettered_not_retried_for_ever(
    setup: tuple[Settings, aioredis.Redis],
) -> None:
    settings, redis = setup
    await produce(settings, redis, list(range(10)))

    async def process(frame: Frame) -> dict[str, Any]:
        return {"blob": "x" * 2_000_000} if frame.frame_id == "f-3" else {"ok": True}

    pipeline = await run_until_committed(settings, process, 10)

    assert pipeline.stats.committed == 10
    results = await _read_all(settings, settings.results_topic, expected=9)
    assert sorted(json.loads(r.value)["frame_id"] for r in results) == sorted(f"f-{n}" for n in range(10) if n != 3)
    letters = [json.loads(r.value) for r in await _read_all(settings, settings.dead_letter_topic, expected=1)]
    assert [(d["reason"], d["frame_id"]) for d in letters] == [(RESULT_TOO_LARGE, "f-3")]
    assert pipeline.stats.dead_lettered == {RESULT_TOO_LARGE: 1}


async def test_two_copies_of_a_pair_in_one_batch_are_processed_once(setup: tuple[Settings, aioredis.Redis]) -> None:
    settings, redis = setup
    await produce(settings, redis, [0, 1, 1, 2, 1])  # a replay: f-1 three times
    calls: Counter[str] = Counter()

    async def process(frame: Frame) -> dict[str, Any]:
        calls[frame.frame_id] += 1
        return {}

    pipeline = await run_until_committed(settings, process, 5)

    assert calls == {"f-0": 1, "f-1": 1, "f-2": 1}
    assert pipeline.stats.duplicates == 2
    results = await _read_all(settings, settings.results_topic, expected=3)
    assert Counter(json.loads(r.value)["frame_id"] for r in results) == {"f-0": 1, "f-1": 1, "f-2": 1}


async def test_a_pair_a_peer_finished_while_the_batch_ran_is_not_published_again(
    setup: tuple[Settings, aioredis.Redis],
) -> None:
    settings, redis = setup
    await produce(settings, redis, [0, 1, 2])
    peer = DoneMarkers(redis, settings.results_topic, 600)

    async def process(frame: Frame) -> dict[str, Any]:
        if frame.frame_id == "f-1":
            # Meanwhile this replica's frames failed over and a peer finished this one.
            await peer.mark([peer.key(frame.frame_id, frame.capability)])
        return {}

    pipeline = await run_until_committed(settings, process, 3)

    assert pipeline.stats.duplicates == 1
    results = await _read_all(settings, settings.results_topic, expected=2)
    assert sorted(json.loads(r.value)["frame_id"] for r in results) == ["f-0", "f-2"]


_FREEZING_REPLICA = """
import asyncio, sys
import redis.asyncio as aioredis
from core.settings import load_settings
from frame_buffer_sdk import ProcessorClient

settings = load_settings()
marker = sys.argv[1]

async def process(frame):
    if frame.routed.sequence == 5:
        r = aioredis.Redis.from_url(settings.redis_url)
        await r.set(marker, "1")
        await r.aclose()
        await asyncio.sleep(2)  # the test SIGSTOPs the replica in here, mid-batch
    return {"replica": "frozen"}

ProcessorClient(settings, "checksum", ["c"], process, max_batch=500).run_sync(register=False)
"""


@pytest.mark.faults_long
async def test_a_replica_frozen_while_its_frames_failed_over_publishes_nothing_on_waking(
    make_settings: Callable[..., Settings], unique: str
) -> None:
    settings = make_settings(broker_session_timeout=3.0)
    await ensure_topics(
        settings.bootstrap_servers,
        [(settings.ready_topic(PID), 1), (settings.results_topic, settings.captured_partitions)],
    )
    redis = aioredis.Redis.from_url(settings.redis_url)
    marker = f"{unique}:frozen"
    frames = 12
    await produce(settings, redis, list(range(frames)))
    frozen = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _FREEZING_REPLICA, marker, env=settings_env(settings), cwd=str(ROOT)
    )
    try:
        await _wait_until_async(lambda: redis.exists(marker), 30, "the replica to hold its batch")
        frozen.send_signal(signal.SIGSTOP)

        async def survive(frame: Frame) -> dict[str, Any]:
            return {"replica": "survivor"}

        survivor = ProcessorClient(settings, PID, ["c"], survive)
        task = asyncio.create_task(survivor.run(register=False))
        try:
            await _wait_until(lambda: survivor.stats.committed >= frames, 60, "the survivor to commit every frame")
        finally:
            await asyncio.wait_for(survivor.stop(), timeout=30)
            await task
        frozen.send_signal(signal.SIGCONT)
        await asyncio.sleep(6)  # its sleep ends, its batch completes and would be published now
    finally:
        with contextlib.suppress(ProcessLookupError):
            frozen.send_signal(signal.SIGCONT)
            frozen.send_signal(signal.SIGKILL)
        await asyncio.wait_for(frozen.wait(), timeout=10)
        await redis.aclose()

    results = [json.loads(r.value) for r in await _read_all(settings, settings.results_topic, expected=frames)]
    assert Counter(d["frame_id"] for d in results) == {f"f-{n}": 1 for n in range(frames)}
    assert {d["result"]["replica"] for d in results} == {"survivor"}


async def _wait_until_async(check: Callable[[], Awaitable[Any]], within: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
