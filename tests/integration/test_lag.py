"""The lag sampler against the real broker: exact per-partition lag from fetch highwaters."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from core.lag import LagSampler, build_sample, processor_watch, router_watch
from core.settings import Settings
from frame_buffer_sdk.kafka import ensure_topics


async def _produce(bootstrap: str, topic: str, counts: dict[int, int]) -> None:
    # Batched sends (linger): the case where ListOffsets(latest) on Tansu undercounts.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, f"{partition}-{i}".encode(), partition=partition)
            for partition, n in counts.items()
            for i in range(n)
        ]
        for future in futures:
            await future
    finally:
        await producer.stop()


async def _consume_and_commit(bootstrap: str, topic: str, group: str, upto: dict[int, int]) -> None:
    """Read each partition up to an offset and commit it, as group ``group`` (assigned, no join)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in upto]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        read = dict.fromkeys(upto, 0)
        while any(read[p] < upto[p] for p in upto):
            batch = await consumer.getmany(timeout_ms=1000)
            for tp, records in batch.items():
                read[tp.partition] += sum(1 for r in records if r.offset < upto[tp.partition])
        await consumer.commit({TopicPartition(topic, p): offset for p, offset in upto.items() if offset > 0})
    finally:
        await consumer.stop()


@pytest.mark.integration
async def test_exact_lag_per_partition_then_zero_after_commit(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    bootstrap = settings.bootstrap_servers
    topic, group = processor_watch(settings, "lagged")
    await ensure_topics(bootstrap, [(topic, 3)])
    await _produce(bootstrap, topic, {0: 5, 1: 7, 2: 3})
    await _consume_and_commit(bootstrap, topic, group, {0: 2, 1: 7})

    async with LagSampler(bootstrap) as sampler:
        sample = (await sampler.sample({"p": (topic, group)}))["p"]
        assert sample.end == {0: 5, 1: 7, 2: 3}
        assert sample.per_partition == {0: 3, 1: 0, 2: 3}  # partition 2: never committed, counts from 0
        assert sample.committed == {0: 2, 1: 7, 2: 0}
        assert (sample.total, sample.committed_total, sample.complete) == (6, 9, True)

        await _consume_and_commit(bootstrap, topic, group, {0: 5, 1: 7, 2: 3})
        sample = (await sampler.sample({"p": (topic, group)}))["p"]
        assert sample.per_partition == {0: 0, 1: 0, 2: 0}
        assert (sample.total, sample.committed_total) == (0, 15)

        # The same long-lived sampler sees new records: highwaters are refreshed per sample. A
        # fetch already in flight when the records land may answer with the old highwater, so
        # the next sample (the leader takes one every LAG_SAMPLE_INTERVAL) is the one to show them.
        await _produce(bootstrap, topic, {1: 4})
        for _ in range(5):
            sample = (await sampler.sample({"p": (topic, group)}))["p"]
            if sample.per_partition[1]:
                break
            await asyncio.sleep(0.1)
        assert sample.per_partition == {0: 0, 1: 4, 2: 0}
        assert sample.end == {0: 5, 1: 11, 2: 3}


@pytest.mark.integration
async def test_many_watches_one_sampler_and_missing_topic_is_not_created(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    bootstrap = settings.bootstrap_servers
    topic_a, group_a = processor_watch(settings, "a")
    router_topic, router_group = router_watch(settings)
    missing_topic, missing_group = processor_watch(settings, "not-registered-yet")
    await ensure_topics(bootstrap, [(topic_a, 2), (router_topic, 4)])
    await _produce(bootstrap, topic_a, {0: 3, 1: 1})
    await _produce(bootstrap, router_topic, {3: 2})
    await _consume_and_commit(bootstrap, router_topic, router_group, {3: 1})

    async with LagSampler(bootstrap) as sampler:
        samples = await sampler.sample(
            {
                "a": (topic_a, group_a),
                "a-other-group": (topic_a, f"{group_a}-other"),
                "router": (router_topic, router_group),
                "missing": (missing_topic, missing_group),
            }
        )
    assert samples["a"].per_partition == {0: 3, 1: 1}
    assert samples["a-other-group"].total == 4
    assert samples["router"].per_partition == {0: 0, 1: 0, 2: 0, 3: 1}
    assert samples["missing"].per_partition == {} and samples["missing"].total == 0

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        assert missing_topic not in await admin.list_topics()
    finally:
        await admin.close()


def test_build_sample_clamps_and_counts_uncommitted_from_log_start() -> None:
    sample = build_sample(
        end={0: 10, 1: 4, 2: 8, 3: 5},
        committed={0: 7, 1: 9, 2: None, 3: -1},
        start={2: 3, 3: 6},
        at=1.0,
    )
    # 1: committed past the (quirky) end -> 0; 3: log start past the end -> clamped to the end.
    assert sample.per_partition == {0: 3, 1: 0, 2: 5, 3: 0}
    assert sample.committed == {0: 7, 1: 9, 2: 3, 3: 5}
    assert (sample.total, sample.committed_total) == (8, 24)


def test_build_sample_of_a_topic_without_partitions_is_empty() -> None:
    sample: Any = build_sample(end={}, committed={}, start={}, at=0.0)
    assert (sample.total, sample.committed_total, sample.per_partition) == (0, 0, {})
