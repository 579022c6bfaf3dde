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

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, for_code
from aiokafka.protocol.commit import OffsetCommitRequest
from aiokafka.structs import OffsetAndMetadata
from pydantic import ValidationError

from agents.config import FailoverConfig
from core.metrics import FRAMES_REROUTED
from frame_buffer_sdk.kafka import start_reliable_producer
from frame_buffer_sdk.models import FrameEvent, ProcessorRecord, RoutedFrame

log = logging.getLogger(__name__)
FETCH_TIMEOUT_MS = 500


class Failover:
    """At most one re-route in flight per processor; started by the health watch."""

    def __init__(self, config: FailoverConfig) -> None:
        self.config = config
        self._running: dict[str, asyncio.Task[int]] = {}
        # Where re-sending got to, per processor: a broker may refuse the offset commit
        # while the dead group lingers, and the next attempt must not re-send it all.
        self._moved_to: dict[str, dict[TopicPartition, int]] = {}
        self._uncommitted: set[str] = set()

    def has_work(self, record: ProcessorRecord, end: dict[int, int], committed: dict[int, int]) -> bool:
        """Frames past both the committed offsets and what was already re-sent, or a commit to retry."""
        if record.id in self._uncommitted:
            return True
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
            moved, committed = await reroute_backlog(self.config, record, self._moved_to.setdefault(record.id, {}))
        except Exception as exc:  # retried on the next health tick while the backlog remains
            log.warning("failover of %s failed, will retry: %r", record.id, exc)
            return 0
        if committed:
            # The group's offsets now stand past the re-sent frames: a later failover of this
            # processor must start from them, never re-commit these (older) ends over newer ones.
            self._moved_to.pop(record.id, None)
            self._uncommitted.discard(record.id)
        else:
            self._uncommitted.add(record.id)
        if moved:
            log.warning("failover: re-routed %d frames away from %s (%s)", moved, record.id, reason)
        return moved


async def reroute_backlog(
    config: FailoverConfig, record: ProcessorRecord, moved_to: dict[TopicPartition, int] | None = None
) -> tuple[int, bool]:
    """Re-send every frame past the group's committed offsets (and past ``moved_to``, what an
    earlier attempt re-sent); then commit past them. ``moved_to`` is updated in place.
    Returns how many were re-sent, and whether the group's offsets now stand past them."""
    moved_to = {} if moved_to is None else moved_to
    bootstrap = config.bootstrap_servers
    security = config.kafka_security
    # No group: reading the backlog must never join processor.<id> and take partitions from
    # a replica that is alive but slow. Offsets are read and written through the admin API.
    consumer = AIOKafkaConsumer(
        **security.client_kwargs(),
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    admin = AIOKafkaAdminClient(
        **security.client_kwargs(), bootstrap_servers=bootstrap, client_id=f"{config.app_id}-failover"
    )
    producer: AIOKafkaProducer | None = None  # only when there is something to re-send
    await consumer.start()
    try:
        await admin.start()
    except BaseException:
        await consumer.stop()
        await admin.close()
        raise
    try:
        partitions = consumer.partitions_for_topic(record.topic) or set()
        tps = [TopicPartition(record.topic, p) for p in sorted(partitions)]
        if not tps:
            return 0, True
        consumer.assign(tps)
        committed = await admin.list_consumer_group_offsets(record.consumer_group, partitions=tps)
        for tp in tps:
            meta = committed.get(tp)
            # From offset 0 when nothing was committed (frame_buffer_sdk.offsets): Tansu's earliest
            # offset may lie past a first batch, which would then be committed past, never re-sent.
            start = max(meta.offset if meta is not None and meta.offset >= 0 else 0, moved_to.get(tp, 0))
            consumer.seek(tp, start)
        moved = 0
        ends: dict[TopicPartition, int] = {}
        pending: list[asyncio.Future[object]] = []
        while True:
            batch = await consumer.getmany(*tps, timeout_ms=FETCH_TIMEOUT_MS, max_records=1000)
            for tp, messages in batch.items():
                for msg in messages:
                    if producer is None:
                        producer = await start_reliable_producer(
                            bootstrap, f"{config.app_id}-failover", security=security
                        )
                    pending.append(
                        await producer.send(
                            config.captured_topic,
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
        # Read again: a replica that came back may have committed past what was re-sent while
        # the re-send ran, and an outside commit of the older ends would rewind its group.
        current = await admin.list_consumer_group_offsets(record.consumer_group, partitions=tps)
        ends = offsets_to_commit(moved_to, _offsets(current), set(tps))
        refused = await commit_as_admin(admin, record.consumer_group, ends) if ends else ""
        if refused:
            # A group with live (or not yet expired) members refuses an outside commit; the
            # moved frames are remembered above, and the SDK skips pairs a peer finished.
            log.info("failover commit for %s deferred: %s", record.consumer_group, refused)
        if moved:
            FRAMES_REROUTED.labels(record.id).inc(moved)
        return moved, not refused
    finally:
        if producer is not None:
            await producer.stop()
        await consumer.stop()
        await admin.close()


def offsets_to_commit(
    moved_to: dict[TopicPartition, int], committed: dict[TopicPartition, int], watched: set[TopicPartition]
) -> dict[TopicPartition, int]:
    """The re-sent ends still ahead of the group's committed offsets; never one at or below them.

    Ends the group already passed are dropped from ``moved_to`` too: its own commits cover them,
    and remembering them would only tempt a later attempt to commit them over newer offsets.
    """
    for tp in [tp for tp, offset in moved_to.items() if offset <= committed.get(tp, -1)]:
        del moved_to[tp]
    return {tp: offset for tp, offset in moved_to.items() if tp in watched}


def _offsets(listed: dict[TopicPartition, OffsetAndMetadata]) -> dict[TopicPartition, int]:
    """Committed offsets of a group from the admin API; partitions without a commit are absent."""
    return {tp: meta.offset for tp, meta in listed.items() if meta is not None and meta.offset >= 0}


async def commit_as_admin(admin: AIOKafkaAdminClient, group: str, offsets: dict[TopicPartition, int]) -> str:
    """Commit ``offsets`` for ``group`` as no member (generation -1), as Kafka's tools do.
    Returns "" on success, else the refusal."""
    by_topic: dict[str, list[tuple[int, int, str]]] = {}
    for tp, offset in sorted(offsets.items()):
        by_topic.setdefault(tp.topic, []).append((tp.partition, offset, ""))
    request = OffsetCommitRequest(
        group,
        OffsetCommitRequest.DEFAULT_GENERATION_ID,
        "",
        OffsetCommitRequest.DEFAULT_RETENTION_TIME,
        list(by_topic.items()),
    )
    try:
        node = await admin.find_coordinator(group)
        response = await admin._send_request_to_node(node, request)
    except KafkaError as exc:
        return repr(exc)
    errors = {code for _, parts in response.topics for _, code in parts if code}
    return ", ".join(str(for_code(code).__name__) for code in sorted(errors))


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
