"""One processor's topic into its Redis stream, at least once.

It consumes ``frames.ready.<id>`` as the processor's own consumer group (``processor.<id>``):
the orchestrator's lag, health and failover watch that group, and for a processor that reads
Redis it is the relay that makes progress on its behalf. A record is done once its XADD
returned; only then is its offset committed, so a crash in between delivers it again.

While the stream holds ``capacity`` entries the processor has not acknowledged, the relay
reads no more: a processor that stops reading then shows as lag on its Kafka group, where
backpressure and failover see it, instead of as a stream growing unseen in Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Sequence
from typing import Any, TypeAlias

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from core.metrics import (
    DEAD_LETTERED,
    RELAY_COMMIT_LAG,
    RELAY_FRAMES,
    RELAY_GAUGES,
    RELAY_STREAM_PENDING,
    RELAY_STREAM_UNREAD,
    RELAY_XADD_ERRORS,
)
from frame_buffer_sdk.models import DeadLetter, RoutedFrame
from frame_buffer_sdk.offsets import StartAtFirst
from relay.config import RelayConfig
from relay.fields import DETEKTR_GROUP, stream_fields
from relay.queues import Queue

log = logging.getLogger(__name__)

POLL_MS = 250
MAX_BATCH = 100
RETRY_SECONDS = 1.0
INVALID_REASON = "relay_invalid_record"
SERVICE = "relay"  # the service label of its dead letters

Record: TypeAlias = ConsumerRecord[bytes, bytes]


async def ensure_stream_group(redis: Redis, stream: str) -> None:
    """detektr's client creates its group without MKSTREAM and never retries: the stream must exist first."""
    try:
        await redis.xgroup_create(stream, DETEKTR_GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def _header(record: Record, name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name and value:
            return bytes(value).decode("utf-8", "replace")
    return None


class Delivery:
    """Mirrors ``config.names.ready_topic(queue.processor_id)`` into ``queue.stream`` until ``stop`` is set."""

    def __init__(self, config: RelayConfig, queue: Queue, redis: Redis, producer: AIOKafkaProducer) -> None:
        self.config = config
        self.queue = queue
        self.redis = redis
        self.producer = producer
        self.delivered = 0
        self.dead_lettered = 0
        self.stop = asyncio.Event()

    async def backlog(self) -> int:
        """Entries of the stream the processor has not read or not acknowledged."""
        for info in await self.redis.xinfo_groups(self.queue.stream):
            name = info["name"]
            if (name.decode() if isinstance(name, bytes) else name) != DETEKTR_GROUP:
                continue
            lag = info.get("lag")
            unread = int(lag) if lag is not None else int(await self.redis.xlen(self.queue.stream))
            pending = int(info.get("pending") or 0)
            RELAY_STREAM_UNREAD.labels(self.queue.processor_id).set(unread)
            RELAY_STREAM_PENDING.labels(self.queue.processor_id).set(pending)
            return unread + pending
        return 0

    async def run(self) -> None:
        s, pid = self.config, self.queue.processor_id
        await ensure_stream_group(self.redis, self.queue.stream)
        consumer = AIOKafkaConsumer(
            **s.kafka_security.client_kwargs(),
            bootstrap_servers=s.bootstrap_servers,
            client_id=f"relay-{pid}-{socket.gethostname()}-{os.getpid()}",
            group_id=s.names.processor_group(pid),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=MAX_BATCH,
            fetch_max_wait_ms=s.consumer_fetch_max_wait_ms,
            session_timeout_ms=int(s.broker_session_timeout * 1000),
            rebalance_timeout_ms=int(s.broker_rebalance_timeout * 1000),
            heartbeat_interval_ms=int(s.broker_heartbeat_interval * 1000),
        )
        # A partition the group never committed starts at its first record (frame_buffer_sdk.offsets).
        consumer.subscribe([s.names.ready_topic(pid)], listener=StartAtFirst(consumer))
        await consumer.start()
        log.info("relay: %s -> Redis stream %s (group %s)", s.names.ready_topic(pid), self.queue.stream, DETEKTR_GROUP)
        try:
            while not self.stop.is_set():
                await self._step(consumer)
                await self._sample_commit_lag(consumer)
        finally:
            await consumer.stop()
            # Another relay (or this one, restarted) reports this processor from now on.
            for gauge in RELAY_GAUGES:
                with contextlib.suppress(KeyError):
                    gauge.remove(pid)

    async def _sample_commit_lag(self, consumer: AIOKafkaConsumer) -> None:
        """Highwater of the last fetch less the position, over the partitions held: each step
        commits what it delivered or seeks back to it, so the position is the committed offset.
        (The fetch highwater, as Tansu's ListOffsets end is too small.)"""
        lag, known = 0, False
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            lag += max(0, highwater - await consumer.position(tp))
            known = True
        if known:
            RELAY_COMMIT_LAG.labels(self.queue.processor_id).set(lag)

    async def _step(self, consumer: AIOKafkaConsumer) -> None:
        try:
            room = self.queue.capacity - await self.backlog()
        except RedisError as exc:
            log.warning("relay %s: %r; retrying", self.queue.processor_id, exc)
            await asyncio.sleep(RETRY_SECONDS)
            return
        # Paused, the consumer still polls, so it stays in its group while the processor catches up.
        assigned = consumer.assignment()
        if room <= 0:
            consumer.pause(*assigned)
        else:
            consumer.resume(*assigned)
        batch = await consumer.getmany(timeout_ms=POLL_MS, max_records=max(1, min(MAX_BATCH, room)))
        for tp, records in batch.items():
            if not records:
                continue
            try:
                await self._deliver(records)
            except (RedisError, KafkaError, OSError) as exc:
                if isinstance(exc, RedisError):
                    RELAY_XADD_ERRORS.labels(self.queue.processor_id).inc()
                log.warning("relay %s: %r; %d records delivered again", self.queue.processor_id, exc, len(records))
                consumer.seek(tp, records[0].offset)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            try:
                await consumer.commit({TopicPartition(tp.topic, tp.partition): records[-1].offset + 1})
            except KafkaError as exc:
                # The partition went to another relay in a rebalance: it delivers from the last commit.
                log.warning("relay %s: commit failed (%r); duplicates may follow", self.queue.processor_id, exc)

    async def _deliver(self, records: Sequence[Record]) -> None:
        letters: list[Any] = []
        async with self.redis.pipeline(transaction=False) as pipe:
            for record in records:
                try:
                    frame = RoutedFrame.model_validate_json(record.value or b"")
                except ValidationError as exc:
                    letters.append(await self._dead_letter(record, exc))
                    continue
                fields = stream_fields(frame, _header(record, "traceparent"), _header(record, "tracestate"))
                pipe.xadd(self.queue.stream, fields)  # type: ignore[arg-type]
            replies = await pipe.execute()
        if letters:
            await asyncio.gather(*letters)
        self.delivered += len(replies)
        self.dead_lettered += len(letters)
        RELAY_FRAMES.labels(self.queue.processor_id).inc(len(replies))
        if letters:
            DEAD_LETTERED.labels(INVALID_REASON, SERVICE, self.queue.processor_id).inc(len(letters))

    async def _dead_letter(self, record: Record, exc: ValidationError) -> Any:
        letter = DeadLetter(
            reason=INVALID_REASON,
            detail=f"record on {record.topic} is not a routed frame: {exc.errors()[0]['msg']}",
            processor_id=self.queue.processor_id,
            raw={"value": (record.value or b"").decode("utf-8", "replace")[:16_384]},
        )
        return await self.producer.send(
            self.config.dead_letter_topic, key=record.key or b"", value=letter.model_dump_json().encode()
        )
