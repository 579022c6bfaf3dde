"""Reads from a partition's start get its first batch, even where the broker's earliest offset
lies past it.

Tansu answers ListOffsets(earliest) with the batch it stored first; producers appending to one
partition at once may be stored out of offset order, and then that answer skips a batch
(frame_buffer_sdk.offsets). Here several producers append to one partition at once, on fresh
topics until the broker's answer is past offset 0; then each reader from the start must still
see every record. A broker that answers right (Kafka) leaves nothing to prove: the case skips.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from app.dead_letters import read_topic as read_dead_letter_topic
from core.settings import Settings
from frame_buffer_sdk.kafka import ensure_topics
from frame_buffer_sdk.pipeline import FramePipeline, PipelineConfig
from tests.integration.cluster import read_topic, wait_until

pytestmark = pytest.mark.integration

PRODUCERS = 8
RECORDS = 4  # per producer, sent at once
# About 1 topic in 80 ends skewed on an idle machine (more under load); within this many seconds
# of tries the chance of none is about 3%, and then the case skips.
TRYING_SECONDS = 20.0


async def skewed_topic(settings: Settings, prefix: str) -> tuple[str, int]:
    """A one-partition topic whose earliest offset, as the broker answers it, is past a first
    batch, and how many records it holds: producers append to new topics at once until one is."""
    producers = [
        AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all", linger_ms=20)
        for _ in range(PRODUCERS)
    ]
    for producer in producers:
        await producer.start()
    try:
        deadline = time.monotonic() + TRYING_SECONDS
        attempt = 0
        while time.monotonic() < deadline:
            topic = f"{prefix}.{attempt}"
            attempt += 1
            await ensure_topics(settings.bootstrap_servers, [(topic, 1)])
            for producer in producers:
                await producer.partitions_for(topic)  # metadata first, so that no send waits for it
            acks = [
                await producer.send(topic, json.dumps([n, i]).encode(), partition=0)
                for i in range(RECORDS)
                for n, producer in enumerate(producers)
            ]
            await asyncio.gather(*acks)
            if await earliest_offset(settings, topic):
                return topic, len(acks)
    finally:
        for producer in producers:
            await producer.stop()
    pytest.skip(f"the broker answered all {attempt} earliest offsets right: nothing to prove")


async def earliest_offset(settings: Settings, topic: str) -> int:
    """The broker's ListOffsets(earliest) answer for partition 0 of ``topic``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=None)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        return int((await consumer.beginning_offsets([tp]))[tp])
    finally:
        await consumer.stop()


async def read_by_a_new_processor_group(settings: Settings, topic: str, count: int) -> int:
    """How many records of ``topic`` a FramePipeline of a new group reads. They are not routed
    frames, so each one is dead-lettered: the letters count them."""
    config = PipelineConfig("junk", topic, settings.processor_group("junk"), max_batch=500)

    async def never_called(frame: Any) -> dict[str, Any]:
        raise AssertionError("no record is a frame")

    pipeline = FramePipeline(settings, config, never_called)
    await pipeline.start()
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    try:
        await wait_until(lambda: pipeline.stats.committed >= count or task.done(), 30, what=f"{count} committed")
    except TimeoutError:
        pass  # what was read is counted by the caller
    finally:
        stop.set()
        await task
        await pipeline.close()
    return int(pipeline.stats.dead_lettered["invalid_routed_frame"])


async def test_reads_from_the_start_see_the_batch_the_earliest_offset_skips(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    topic, count = await skewed_topic(settings, f"{settings.app_id}.skewed")
    skipped = f"(the broker's earliest offset is {await earliest_offset(settings, topic)})"

    whole = await read_topic(settings, topic, idle_seconds=2, max_seconds=30)
    assert len(whole) == count, f"the tests' whole-topic read got {len(whole)} of {count} records {skipped}"
    listed = await read_dead_letter_topic(settings, topic)
    assert len(listed.records) == count, f"the dead-letters command read {len(listed.records)} of {count} {skipped}"
    processed = await read_by_a_new_processor_group(settings, topic, count)
    assert processed == count, f"a new processor group read {processed} of {count} records {skipped}"
