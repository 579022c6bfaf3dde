"""Failover against a real broker: ends remembered from a refused commit never rewind a group
that has since committed further (the 4,900-offset rewind of issue #10)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from agents.failover import commit_as_admin, reroute_backlog
from app.configs import failover_config
from core.settings import Settings
from frame_buffer_sdk.kafka import ensure_topics
from frame_buffer_sdk.models import ProcessorRecord

pytestmark = pytest.mark.integration


async def test_a_stale_remembered_end_is_not_committed_over_a_newer_offset(
    make_settings: Callable[..., Settings], unique: str
) -> None:
    settings = make_settings()
    pid = f"p-{unique}"
    topic, group = settings.ready_topic(pid), settings.processor_group(pid)
    tp = TopicPartition(topic, 0)
    await ensure_topics(settings.bootstrap_servers, [(topic, 1), (settings.captured_topic, 1)])
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    await producer.start()
    try:
        for n in range(5_000):
            await producer.send(topic, key=b"cam", value=f"frame-{n}".encode())
        await producer.flush()
    finally:
        await producer.stop()
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        # The replica came back and worked through everything after an earlier failover had
        # re-sent the first 100 frames and had its commit refused.
        assert await commit_as_admin(admin, group, {tp: 5_000}) == ""
        now = datetime.now(UTC)
        record = ProcessorRecord(
            id=pid, capabilities=["motion"], topic=topic, consumer_group=group, last_heartbeat=now, registered_at=now
        )
        moved_to = {tp: 100}
        moved, committed = await reroute_backlog(failover_config(settings), record, moved_to)

        offsets = await admin.list_consumer_group_offsets(group, partitions=[tp])
        assert offsets[tp].offset == 5_000
        assert (moved, committed) == (0, True)
        assert moved_to == {}
    finally:
        await admin.close()
