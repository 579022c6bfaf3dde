"""A result the broker refuses for good is dead-lettered, not republished for ever (real Kafka, Redis).

A topic's max.message.bytes makes Kafka refuse a record batch that the producer let through.
The embedded Tansu broker ignores that topic config (a topic created with max.message.bytes=2000
takes a 50,000-byte record), so the broker's answer is played by a wrapper of the real producer:
it keeps a record over the limit from the broker and fails its send future with aiokafka's own
MessageSizeTooLargeError, as the producer's sender does on a MESSAGE_TOO_LARGE produce response.
Everything else goes through the real producer to the real broker.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, NotLeaderForPartitionError

from core.settings import Settings
from frame_buffer_sdk import Frame
from frame_buffer_sdk.pipeline import RESULT_TOO_LARGE, FramePipeline, PipelineConfig
from tests.faults.test_processor_duplicates import PID, produce, setup
from tests.integration.test_processor_sdk import _read_all, _wait_until

__all__ = ["setup"]  # the fixture, shared with the duplicates' tests

LIMIT = 10_000  # the results topic's max.message.bytes, as the wrapper applies it


class BrokerRefusing:
    """The pipeline's real producer; results are refused as the broker does, from the send future.

    ``refuse``: frame ids whose result is refused with the error it maps to, the first time it is
    sent (a record batched with an oversized one is refused with it: Kafka refuses whole batches).
    A result over LIMIT is refused every time, alone in its batch too.
    """

    def __init__(self, producer: AIOKafkaProducer, topic: str, refuse: dict[str, KafkaError]) -> None:
        self._producer = producer
        self._topic = topic
        self._refuse = dict(refuse)
        self.refused: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)

    async def send(self, topic: str, value: bytes, key: bytes, headers: Any = None) -> asyncio.Future[Any]:
        if topic == self._topic:
            frame_id = json.loads(value)["frame_id"]
            error = self._refuse.pop(frame_id, None)
            if error is None and len(value) > LIMIT:
                error = MessageSizeTooLargeError()
            if error is not None:
                return self._refused(frame_id, error)
        sent: asyncio.Future[Any] = await self._producer.send(topic, value=value, key=key, headers=headers)
        return sent

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> asyncio.Future[Any]:
        if topic == self._topic and batch.size() > LIMIT:
            return self._refused("<batch>", MessageSizeTooLargeError())
        sent: asyncio.Future[Any] = await self._producer.send_batch(batch, topic, partition=partition)
        return sent

    def _refused(self, what: str, error: KafkaError) -> asyncio.Future[Any]:
        self.refused.append(what)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        # The broker's answer comes later, as a produce response does.
        asyncio.get_running_loop().call_later(0.01, future.set_exception, error)
        return future


async def run_refused(
    settings: Settings, process: Callable[[Frame], Any], refuse: dict[str, KafkaError], committed: int
) -> tuple[FramePipeline, BrokerRefusing]:
    config = PipelineConfig(PID, settings.ready_topic(PID), settings.processor_group(PID), max_batch=100)
    pipeline = FramePipeline(settings, config, process)
    await pipeline.start()
    wrapper = BrokerRefusing(pipeline._require_producer(), settings.results_topic, refuse)
    pipeline._producer = wrapper  # type: ignore[assignment]
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    try:
        await _wait_until(lambda: pipeline.stats.committed >= committed or task.done(), 30, f"{committed} committed")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        pipeline._producer = wrapper._producer
        await pipeline.close()
    return pipeline, wrapper


async def test_a_result_the_broker_refuses_for_its_size_is_dead_lettered_and_its_batch_goes_on(
    setup: tuple[Settings, aioredis.Redis],
) -> None:
    settings, redis = setup
    await produce(settings, redis, list(range(10)))

    async def process(frame: Frame) -> dict[str, Any]:
        # 50 kB passes the producer's 1 MB limit; only the topic's limit refuses it.
        return {"blob": "x" * 50_000} if frame.frame_id == "f-3" else {"ok": True}

    # f-4 was in f-3's batch: refused with it, then taken alone.
    pipeline, wrapper = await run_refused(settings, process, {"f-4": MessageSizeTooLargeError()}, 10)

    assert pipeline.stats.committed == 10
    results = await _read_all(settings, settings.results_topic, expected=9)
    assert Counter(json.loads(r.value)["frame_id"] for r in results) == {f"f-{n}": 1 for n in range(10) if n != 3}
    letters = [json.loads(r.value) for r in await _read_all(settings, settings.dead_letter_topic, expected=1)]
    assert [(d["reason"], d["frame_id"]) for d in letters] == [(RESULT_TOO_LARGE, "f-3")]
    size = letters[0]["raw"]["result_bytes"]
    assert size > 50_000 and f"the result is {size} bytes, more than the broker accepts" in letters[0]["detail"]
    assert pipeline.stats.dead_lettered == {RESULT_TOO_LARGE: 1}
    assert pipeline.stats.processed == 9
    # Refused in its batch, then alone; never republished with a rewound batch.
    assert wrapper.refused == ["f-3", "f-4", "<batch>"]


async def test_a_retriable_refusal_of_a_result_rewinds_and_publishes_it_later(
    setup: tuple[Settings, aioredis.Redis],
) -> None:
    settings, redis = setup
    await produce(settings, redis, list(range(5)))

    async def process(frame: Frame) -> dict[str, Any]:
        return {"ok": True}

    pipeline, wrapper = await run_refused(settings, process, {"f-2": NotLeaderForPartitionError()}, 5)

    assert wrapper.refused == ["f-2"]
    results = await _read_all(settings, settings.results_topic, expected=5)
    assert {json.loads(r.value)["frame_id"] for r in results} == {f"f-{n}" for n in range(5)}
    assert await _read_all(settings, settings.dead_letter_topic, expected=0, within=1.0) == []
    assert pipeline.stats.dead_lettered == {}
