"""Failover: move an unhealthy processor's waiting frames to healthy peers, without loss.

The frames beyond the committed offsets of ``processor.<id>`` are read back and re-sent
to the captured topic with ``metadata.rerouted_from`` set; route_frames routes them again
(the dead processor is out of its view, and dedupe lets a pair move away from the dead
processor once). Only after every re-sent record is acknowledged are the group's offsets
advanced, so a replica that comes back does not process them a second time.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from app.context import Orchestrator
from app.kafka import start_reliable_producer
from app.metrics import FRAMES_REROUTED
from app.models import FrameEvent, ProcessorRecord, RoutedFrame

log = logging.getLogger(__name__)
FETCH_TIMEOUT_MS = 500


class Failover:
    """At most one re-route in flight per processor; started by the health watch."""

    def __init__(self, orch: Orchestrator) -> None:
        self.orch = orch
        self._running: dict[str, asyncio.Task[int]] = {}
        # Where re-sending got to, per processor: a broker may refuse the offset commit
        # while the dead group lingers, and the next attempt must not re-send it all.
        self._moved_to: dict[str, dict[TopicPartition, int]] = {}

    def has_unmoved(self, record: ProcessorRecord, end: dict[int, int], committed: dict[int, int]) -> bool:
        """Frames past both the committed offsets and what was already re-sent."""
        moved = self._moved_to.get(record.id, {})
        return any(
            offset > max(committed.get(p, 0), moved.get(TopicPartition(record.topic, p), 0))
            for p, offset in end.items()
        )

    def start(self, record: ProcessorRecord, reason: str) -> None:
        task = self._running.get(record.id)
        if task is not None and not task.done():
            return
        self._running[record.id] = asyncio.ensure_future(self._run(record, reason))

    async def close(self) -> None:
        for task in self._running.values():
            task.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await task
        self._running.clear()

    async def _run(self, record: ProcessorRecord, reason: str) -> int:
        try:
            moved = await reroute_backlog(self.orch, record, self._moved_to.setdefault(record.id, {}))
        except Exception as exc:  # retried on the next health tick while the backlog remains
            log.warning("failover of %s failed, will retry: %r", record.id, exc)
            return 0
        if moved:
            log.warning("failover: re-routed %d frames away from %s (%s)", moved, record.id, reason)
        return moved


async def reroute_backlog(
    orch: Orchestrator, record: ProcessorRecord, moved_to: dict[TopicPartition, int] | None = None
) -> int:
    """Re-send every frame past the group's committed offsets (and past ``moved_to``, what an
    earlier attempt re-sent); then commit past them. ``moved_to`` is updated in place."""
    moved_to = {} if moved_to is None else moved_to
    bootstrap = orch.settings.bootstrap_servers
    # group_id is set so commit() writes that group's offsets; assign() (no subscribe)
    # means this consumer never joins the group and never takes partitions from replicas.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=record.consumer_group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        producer = await start_reliable_producer(bootstrap, client_id=f"{orch.settings.app_id}-failover")
    except BaseException:
        await consumer.stop()
        raise
    try:
        partitions = consumer.partitions_for_topic(record.topic) or set()
        tps = [TopicPartition(record.topic, p) for p in sorted(partitions)]
        if not tps:
            return 0
        consumer.assign(tps)
        for tp in tps:
            start = max(await consumer.committed(tp) or 0, moved_to.get(tp, 0))
            if start:
                consumer.seek(tp, start)
            else:
                await consumer.seek_to_beginning(tp)
        moved = 0
        ends: dict[TopicPartition, int] = {}
        pending: list[asyncio.Future[object]] = []
        while True:
            batch = await consumer.getmany(*tps, timeout_ms=FETCH_TIMEOUT_MS, max_records=1000)
            for tp, messages in batch.items():
                for msg in messages:
                    pending.append(
                        await producer.send(
                            orch.settings.captured_topic,
                            key=msg.key,
                            value=_as_captured(msg.value, record.id),
                            headers=list(msg.headers or ()),
                        )
                    )
                    ends[tp] = msg.offset + 1
                    moved += 1
            if not batch and await _caught_up(consumer, tps):
                break
        if pending:
            await asyncio.gather(*pending)
        moved_to.update(ends)
        ends = {tp: offset for tp, offset in moved_to.items() if tp in set(tps)}
        if ends:
            try:
                await consumer.commit(ends)
            except KafkaError as exc:
                # Members of the dead group have not timed out yet; the next tick retries
                # and dedupe drops the pairs already moved.
                log.info("failover commit for %s deferred: %r", record.consumer_group, exc)
        if moved:
            FRAMES_REROUTED.labels(record.id).inc(moved)
        return moved
    finally:
        await producer.stop()
        await consumer.stop()


async def _caught_up(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> bool:
    for tp in tps:
        if await consumer.position(tp) < (consumer.highwater(tp) or 0):
            return False
    return True


def _as_captured(value: bytes | None, from_processor: str) -> bytes:
    """A routed frame back into a captured frame for one capability, marked as re-routed."""
    try:
        routed = RoutedFrame.model_validate_json(value or b"")
    except ValidationError:
        # Unreadable in the processor topic: still re-sent, and route_frames dead-letters it.
        return value or b""
    frame = FrameEvent.model_construct(
        **{name: getattr(routed, name) for name in FrameEvent.model_fields},
    )
    frame = frame.model_copy(
        update={
            "capabilities": [routed.capability],
            "metadata": {**routed.metadata, "rerouted_from": from_processor},
        }
    )
    return frame.model_dump_json().encode()
