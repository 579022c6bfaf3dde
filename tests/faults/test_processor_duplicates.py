"""The SDK publishes each (frame, capability) once and never rewinds for ever (real Kafka, Redis)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from app.kafka import ensure_topics
from app.settings import Settings
from processor import Frame
from processor.done import DoneMarkers
from processor.pipeline import RESULT_TOO_LARGE, FramePipeline, PipelineConfig
from tests.integration.test_processor_sdk import _produce, _read_all, _routed, _wait_until

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
