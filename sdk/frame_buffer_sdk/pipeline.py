"""The SDK's core loop: fetch a batch, load pixels, process, publish, then commit.

At-least-once: a batch's offsets are committed only after every one of its records led
to an acknowledged record on the results or the dead-letter topic. A crash before the
commit re-delivers the batch (to this or another replica of the same consumer group).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner
from opentelemetry import trace
from opentelemetry.context import Context
from pydantic import ValidationError
from pydantic_core import PydanticSerializationError
from redis.exceptions import RedisError

from frame_buffer_sdk.done import DoneMarkers
from frame_buffer_sdk.frame import Frame, RejectFrame
from frame_buffer_sdk.gaps import GapGuard
from frame_buffer_sdk.handlers import AnyProcessFn, Handler, Invoker, ProcessingTimeout, as_handler, check_options
from frame_buffer_sdk.kafka import ensure_topics, refused_for_good, refused_for_size, start_reliable_producer
from frame_buffer_sdk.metrics import (
    DEAD_LETTERED,
    END_TO_END_SECONDS,
    FRAMES_PROCESSED_OK,
    OFFSET_GAPS,
    PROCESSING_SECONDS,
)
from frame_buffer_sdk.models import PROCESSOR_SOURCE, DeadLetter, FrameResult, RoutedFrame, utcnow
from frame_buffer_sdk.offsets import start_uncommitted_at_first
from frame_buffer_sdk.pixels import PixelStore, missing_pixels
from frame_buffer_sdk.settings import ProcessorSettings
from frame_buffer_sdk.telemetry import PROCESS, context_from_headers, headers_for, messaging_attributes, tracer

log = logging.getLogger(__name__)
Record: TypeAlias = "ConsumerRecord[bytes, bytes]"
Routed = tuple[Record, RoutedFrame]
SERVICE = "processor"
_RETRY_SECONDS = 1.0
RESULT_TOO_LARGE = "result_too_large"
# Kafka refused a result for good, not for its size (the bridge's reason for its refusals too).
RESULT_REFUSED = "kafka_refused"
_PARTITIONER = DefaultPartitioner()
PROCESSING_TIMEOUT = "processing_timeout"
INVALID_BATCH_RESULT = "invalid_batch_result"


@dataclass
class PipelineStats:
    """What this pipeline did since it started; tests and the dev dashboard read it."""

    processed: int = 0
    dead_lettered: Counter[str] = field(default_factory=Counter)
    batches: int = 0
    committed: int = 0
    duplicates: int = 0


@dataclass(slots=True)
class _Outgoing:
    """A record of the outbox. ``done_key``: the pair it finishes, for the fence before publishing;
    ``routed``: the frame a result is for, to dead-letter it if Kafka refuses the result for good."""

    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    future: asyncio.Future[Any]
    done_key: str | None = None
    routed: RoutedFrame | None = None


def first_of_each(keys: Sequence[str]) -> list[bool]:
    """True at the first occurrence of each key: a batch may hold one pair twice (a replay)."""
    seen: set[str] = set()
    first: list[bool] = []
    for key in keys:
        first.append(key not in seen)
        seen.add(key)
    return first


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    processor_id: str
    topic: str
    group: str
    concurrency: int = 1
    stateful: bool = False
    max_batch: int = 100
    poll_ms: int = 250
    partitions: int | None = None
    # After a fetch brings the first records, keep fetching up to max_batch for this long.
    max_wait_ms: float = 0
    # One handler call (a frame, or a batch) past this is dead-lettered processing_timeout.
    timeout_seconds: float | None = None


class _WaitForBatch(ConsumerRebalanceListener):  # type: ignore[misc]
    """Hands partitions over only between batches, so the batch in hand still commits. A
    partition the group never committed starts at its first record, not at the broker's
    earliest offset, which Tansu may answer past a first batch (frame_buffer_sdk.offsets)."""

    def __init__(self, lock: asyncio.Lock, consumer: AIOKafkaConsumer, gaps: GapGuard[TopicPartition]) -> None:
        self._lock = lock
        self._consumer = consumer
        self._gaps = gaps

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self._lock:
            if revoked:
                log.info("partitions revoked: %s", sorted(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("partitions assigned: %s", sorted(assigned))
        self._gaps.reset(assigned)
        await start_uncommitted_at_first(self._consumer, assigned)


class FramePipeline:
    """Consumes ``config.topic`` as ``config.group`` and runs ``process`` on every frame.

    ``process`` is an ``async def`` or a plain ``def`` (run in a worker thread), or a
    :class:`frame_buffer_sdk.handlers.Handler` (a batch handler gets each batch in one call,
    see that module). Frames of one camera are processed in order when ``stateful`` (they
    share a key, hence a partition); otherwise up to ``concurrency`` frames of a batch run at once.
    """

    def __init__(self, settings: ProcessorSettings, config: PipelineConfig, process: Handler | AnyProcessFn) -> None:
        handler = as_handler(process)
        check_options(handler, config.concurrency, config.max_batch, config.max_wait_ms, config.timeout_seconds)
        self.settings = settings
        self.config = config
        self.stats = PipelineStats()
        self._handler = handler
        self._invoke = Invoker(
            handler,
            threads=config.concurrency,
            timeout=config.timeout_seconds,
            name=f"process-{config.processor_id}",
        )
        self._tracer = tracer("processor")
        self._lock = asyncio.Lock()
        self._gaps: GapGuard[TopicPartition] = GapGuard()
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._pixels = PixelStore(settings.redis.client(socket_timeout=10))
        # Results and dead letters of a batch leave only once the whole batch is processed:
        # a replica killed mid-batch then has published nothing its successor will redo.
        self._outbox: list[_Outgoing] = []
        # Deliveries of results refused with their batch, retried alone (kept from the GC).
        self._refusals: set[asyncio.Future[None]] = set()
        self._done = DoneMarkers(
            settings.redis.client(socket_timeout=10), settings.results_topic, int(settings.dedupe_window_seconds)
        )
        pid = config.processor_id
        self._processing_seconds = PROCESSING_SECONDS.labels(pid)
        self._end_to_end_seconds = END_TO_END_SECONDS.labels(pid)
        self._processed_ok = FRAMES_PROCESSED_OK.labels(pid)
        self._gaps_refetched = OFFSET_GAPS.labels(pid, "refetched")
        self._gaps_given_up = OFFSET_GAPS.labels(pid, "given_up")

    async def start(self) -> None:
        """Make sure the topics exist (a metadata request would create them with the broker's
        default partition count), then start producing and join the consumer group."""
        s, c = self.settings, self.config
        await ensure_topics(
            s.bootstrap_servers,
            [
                (c.topic, c.partitions or s.processor_partitions),
                (s.results_topic, s.captured_partitions),
                (s.dead_letter_topic, s.captured_partitions),
            ],
            s.topic_replication_factor,
            security=s.kafka_security,
        )
        consumer = AIOKafkaConsumer(
            **s.kafka_security.client_kwargs(),
            bootstrap_servers=s.bootstrap_servers,
            client_id=f"{c.processor_id}-{socket.gethostname()}-{os.getpid()}",
            group_id=c.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=c.max_batch,
            fetch_max_wait_ms=s.consumer_fetch_max_wait_ms,
            session_timeout_ms=int(s.broker_session_timeout * 1000),
            rebalance_timeout_ms=int(s.broker_rebalance_timeout * 1000),
            heartbeat_interval_ms=int(s.broker_heartbeat_interval * 1000),
        )
        consumer.subscribe([c.topic], listener=_WaitForBatch(self._lock, consumer, self._gaps))
        self._producer = await start_reliable_producer(
            s.bootstrap_servers, f"processor-{c.processor_id}", linger_ms=2, security=s.kafka_security
        )
        try:
            await consumer.start()
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer

    async def run(self, stop: asyncio.Event) -> None:
        """Batches until ``stop`` is set; the batch in hand is finished and committed first.

        A stop also interrupts a fetch still waiting, e.g. for the first group join."""
        consumer = self._require_consumer()
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                fetch = asyncio.ensure_future(
                    consumer.getmany(timeout_ms=self.config.poll_ms, max_records=self.config.max_batch)
                )
                await asyncio.wait({fetch, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not fetch.done():
                    # Records it might still bring are uncommitted: the next owner gets them.
                    fetch.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await fetch
                    return
                batch = fetch.result()
                if batch:
                    async with self._lock:
                        await self._fill(consumer, batch, stop)
                        await self.handle_batch(batch)
        finally:
            stopping.cancel()

    async def _fill(
        self,
        consumer: AIOKafkaConsumer,
        batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
        stop: asyncio.Event,
    ) -> None:
        """Adds to ``batch`` (in place) up to ``max_batch`` records, fetching for at most
        ``max_wait_ms`` after its first ones came: a GPU model wants full batches."""
        wait = self.config.max_wait_ms / 1000
        count = sum(len(part) for part in batch.values())
        if wait <= 0 or count >= self.config.max_batch:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while count < self.config.max_batch and not stop.is_set():
            left = deadline - loop.time()
            if left <= 0:
                return
            room = self.config.max_batch - count
            more = await consumer.getmany(timeout_ms=max(1, round(left * 1000)), max_records=room)
            for tp, part in more.items():
                # Appended in fetch order: a partition's records stay in offset order.
                batch.setdefault(tp, []).extend(part)
                count += len(part)

    async def close(self) -> None:
        """Leave the group and flush the producer. Uncommitted records go to the next owner."""
        self._invoke.close()
        consumer, self._consumer = self._consumer, None
        producer, self._producer = self._producer, None
        try:
            if consumer is not None:
                await consumer.stop()
        finally:
            try:
                if producer is not None:
                    await producer.stop()
            finally:
                await self._pixels.close()
                await self._done.close()

    def _require_consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("FramePipeline.start() first")
        return self._consumer

    def _require_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("FramePipeline.start() first")
        return self._producer

    async def handle_batch(self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        """Process, publish and commit one batch. Partitions lost in a rebalance meanwhile are
        skipped: their new owner reads them from the last commit."""
        consumer = self._require_consumer()
        owned = consumer.assignment()
        self._close_gaps(consumer, batch, owned)
        records = [record for tp, part in batch.items() if tp in owned for record in part]
        if not records:
            return
        self.stats.batches += 1
        acks: list[asyncio.Future[Any]] = []
        frames: list[Routed] = []
        for record in records:
            try:
                frames.append((record, RoutedFrame.model_validate_json(record.value or b"")))
            except ValidationError as exc:
                detail = f"{exc.error_count()} error(s); first: {_first_error(exc)}"
                ctx = context_from_headers(record.headers)
                acks.append(await self._dead_letter("invalid_routed_frame", detail, None, _raw(record), ctx))
        frames, outside = self._split_by_key_prefix(frames)
        for record, routed in outside:
            why = f"frame_key {routed.frame_key!r} is outside {self.settings.processor_frame_key_prefix!r}"
            acks.append(
                await self._dead_letter(
                    "frame_key_outside_prefix", why, routed, ctx=context_from_headers(record.headers)
                )
            )

        try:
            done_keys = [self._done.key(routed.frame_id, routed.capability) for _, routed in frames]
            finished = await self._done.finished(done_keys)
            # Done elsewhere, or a second copy of a pair earlier in this batch: processed once.
            keep = [not done and first for done, first in zip(finished, first_of_each(done_keys), strict=True)]
            if not all(keep):
                self.stats.duplicates += keep.count(False)
                frames = [item for item, kept in zip(frames, keep, strict=True) if kept]
                done_keys = [key for key, kept in zip(done_keys, keep, strict=True) if kept]
            pixels = await self._pixels.load_many([routed.frame_key for _, routed in frames])
        except (RedisError, OSError) as exc:
            log.error("loading pixels failed (%r); re-processing the batch", exc)
            self._discard_outbox()
            await self._rewind(consumer, batch, owned)
            return
        ready: list[tuple[ConsumerRecord[bytes, bytes], Frame]] = []
        for (record, routed), data in zip(frames, pixels, strict=True):
            if data is None:
                age = (utcnow() - routed.captured_at).total_seconds()
                reason, why = missing_pixels(routed.frame_key, age, self.settings.frame_ttl_seconds)
                ctx = context_from_headers(record.headers)
                acks.append(await self._dead_letter(reason, why, routed, ctx=ctx))
            else:
                ready.append((record, Frame(routed, data, record.partition, record.offset)))

        acks.extend(await self._process_all(ready))
        try:
            await self._fence_outbox()
        except (RedisError, OSError) as exc:
            log.error("checking done markers failed (%r); re-processing the batch", exc)
            self._discard_outbox()
            await self._rewind(consumer, batch, owned)
            return
        await self._flush_outbox()
        try:
            await asyncio.gather(*acks)
        except KafkaError as exc:
            log.error("publishing results failed (%r); re-processing the batch", exc)
            with contextlib.suppress(RedisError, OSError):
                await self._done.release(done_keys)  # else a peer given the batch waits them out
            await self._rewind(consumer, batch, owned)
            return
        try:
            await self._done.mark(done_keys)
        except (RedisError, OSError) as exc:
            # Results are out; without markers a redelivery would publish them again, but
            # nothing is lost by committing, so the batch is not processed again here.
            log.warning("could not mark %d frame(s) done: %r", len(done_keys), exc)
        await self._commit(consumer, records)

    def _defer(
        self,
        topic: str,
        key: bytes,
        value: bytes,
        headers: list[tuple[str, bytes]],
        routed: RoutedFrame | None = None,
        result: bool = False,
    ) -> asyncio.Future[Any]:
        """A record for the outbox; the future resolves with its broker acknowledgement."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done_key = self._done.key(routed.frame_id, routed.capability) if routed is not None else None
        self._outbox.append(_Outgoing(topic, key, value, headers, future, done_key, routed if result else None))
        return future

    async def _fence_outbox(self) -> None:
        """Right before publishing: drop what finishes a pair some processor finished meanwhile.

        A replica frozen (SIGSTOP, a long GC) past its session has had its frames failed over
        and finished by a peer; on waking it would publish them a second time. A peer that holds
        a pair right now (a slow processor and the one its backlog moved to) is waited for: the
        pairs kept are claimed by this processor (see DoneMarkers.settle)."""
        keys = [item.done_key for item in self._outbox if item.done_key is not None]
        if not keys:
            return
        done = await self._done.settle(keys)
        if not done:
            return
        kept: list[_Outgoing] = []
        for item in self._outbox:
            if item.done_key in done:
                item.future.set_result(None)  # nothing to wait for: the peer's record stands
                self.stats.duplicates += 1
            else:
                kept.append(item)
        log.warning("%d frame(s) finished by a peer while this batch ran; not published again", len(done))
        self._outbox = kept

    async def _flush_outbox(self) -> None:
        outbox, self._outbox = self._outbox, []
        producer = self._require_producer()
        for item in outbox:
            try:
                ack = await producer.send(item.topic, key=item.key, value=item.value, headers=item.headers)
            except MessageSizeTooLargeError as exc:
                if item.routed is None:
                    item.future.set_exception(exc)
                    continue
                # Refused for good: retrying the batch would rewind it for ever.
                ack = await self._result_refused(producer, item, exc, "the producer")
            except Exception as exc:
                item.future.set_exception(exc)
                continue
            if item.routed is None:
                ack.add_done_callback(lambda done, target=item.future: _settle(target, done))
            else:
                ack.add_done_callback(lambda done, result=item: self._result_acked(producer, result, done))

    def _result_acked(self, producer: AIOKafkaProducer, item: _Outgoing, done: asyncio.Future[Any]) -> None:
        """A result's delivery: a refusal for good (the topic's max.message.bytes, a record the
        broker will never take) is settled apart, the rest (retriable ones too) as delivered."""
        error = None if done.cancelled() else done.exception()
        if error is None or not refused_for_good(error):
            _settle(item.future, done)
            return
        task = asyncio.ensure_future(self._deliver_alone(producer, item))
        self._refusals.add(task)
        task.add_done_callback(self._refusals.discard)

    async def _deliver_alone(self, producer: AIOKafkaProducer, item: _Outgoing) -> None:
        """The broker refused the batch holding this result. Small results may pass the limit only
        together, and aiokafka does not split a refused batch, so the result goes once more in a
        batch of its own; refused alone too, it is dead-lettered and the batch goes on."""
        target = item.future
        try:
            try:
                metadata = await (await self._send_alone(producer, item))
            except KafkaError as again:
                if not refused_for_good(again):
                    raise
                metadata = await (await self._result_refused(producer, item, again, "the broker"))
        except asyncio.CancelledError:
            target.cancel()
            raise
        except Exception as exc:
            if not target.done():
                target.set_exception(exc)
            return
        if not target.done():
            target.set_result(metadata)

    async def _send_alone(self, producer: AIOKafkaProducer, item: _Outgoing) -> asyncio.Future[Any]:
        """``item`` in a batch of its own, on the partition a keyed send picks."""
        partitions = sorted(await producer.partitions_for(item.topic))
        partition = _PARTITIONER(item.key, partitions, partitions)
        batch = producer.create_batch()
        batch.append(timestamp=None, key=item.key, value=item.value, headers=item.headers)
        batch.close()
        sent: asyncio.Future[Any] = await producer.send_batch(batch, item.topic, partition=partition)
        return sent

    async def _result_refused(
        self, producer: AIOKafkaProducer, item: _Outgoing, error: BaseException, by: str
    ) -> asyncio.Future[Any]:
        """The dead letter of a result Kafka refused for good: ``result_too_large`` (with its size)
        when refused for size, ``kafka_refused`` otherwise."""
        routed = item.routed
        assert routed is not None
        size = len(item.value)
        if refused_for_size(error):
            reason = RESULT_TOO_LARGE
            detail = f"the result is {size} bytes, more than {by} accepts ({error!r})"
        else:
            reason = RESULT_REFUSED
            detail = f"{by} refused the result of {size} bytes for good ({error!r})"
        record = self._letter(reason, detail, routed, {"result_bytes": size})
        log.warning("dead-lettered %s (%s): %s", routed.frame_id, reason, detail)
        DEAD_LETTERED.labels(reason, SERVICE, self.config.processor_id).inc()
        self.stats.processed -= 1
        self.stats.dead_lettered[reason] += 1
        ack: asyncio.Future[Any] = await producer.send(
            self.settings.dead_letter_topic, key=item.key, value=record.model_dump_json().encode()
        )
        return ack

    def _close_gaps(
        self,
        consumer: AIOKafkaConsumer,
        batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
        owned: set[TopicPartition],
    ) -> None:
        """A partition's records past a gap in its offsets are left out (in place) and fetched
        again from the gap: committing past it would lose the frames in it."""
        given_up = self._gaps.accepted
        for tp, part in batch.items():
            if tp not in owned:
                continue
            kept, again = self._gaps.contiguous(tp, part)
            if again is not None:
                batch[tp] = list(kept)
                consumer.seek(tp, again)
                self._gaps_refetched.inc()
        if self._gaps.accepted > given_up:
            self._gaps_given_up.inc(self._gaps.accepted - given_up)

    def _discard_outbox(self) -> None:
        """The batch will be processed again: what it would have published is dropped."""
        outbox, self._outbox = self._outbox, []
        for item in outbox:
            item.future.cancel()

    async def _rewind(
        self,
        consumer: AIOKafkaConsumer,
        batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
        owned: set[TopicPartition],
    ) -> None:
        """Nothing of this batch is committed: fetch it again after a pause (at-least-once)."""
        for tp, part in batch.items():
            if tp in owned and part:
                consumer.seek(tp, part[0].offset)
                self._gaps.rewound(tp, part[0].offset)
        await asyncio.sleep(_RETRY_SECONDS)

    async def _commit(self, consumer: AIOKafkaConsumer, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        offsets: dict[TopicPartition, int] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:
            # Typically a rebalance took the partitions: their new owner re-processes from
            # the last commit (at-least-once), so this is a duplicate, never a loss.
            log.warning("commit of %d record(s) failed: %r", len(records), exc)
            return
        self.stats.committed += len(records)

    async def _process_all(self, ready: list[tuple[ConsumerRecord[bytes, bytes], Frame]]) -> list[asyncio.Future[Any]]:
        acks: list[asyncio.Future[Any]] = []
        if not ready:
            return acks
        if self._handler.batch:
            return await self._process_batch(ready)
        # A chain runs its frames in order; up to `concurrency` chains run side by side.
        grouped: dict[Any, list[tuple[ConsumerRecord[bytes, bytes], Frame]]] = {}
        for index, item in enumerate(ready):
            grouped.setdefault(item[1].camera_id if self.config.stateful else index, []).append(item)
        chains = deque(grouped.values())

        async def drain_chains() -> None:
            while chains:
                for record, frame in chains.popleft():
                    acks.append(await self._process_one(record, frame))

        workers = min(self.config.concurrency, len(chains))
        if workers == 1:
            await drain_chains()  # no tasks to pay for when nothing runs side by side
        else:
            await asyncio.gather(*(drain_chains() for _ in range(workers)))
        return acks

    def _span_attributes(self, record: Record, frame: Frame) -> dict[str, str | int]:
        """The attributes of the span of processing ``frame``, one frame or one of a batch."""
        return {
            "frame.id": frame.frame_id,
            "camera.id": frame.camera_id,
            "processor.id": self.config.processor_id,
            "capability": frame.capability,
            **self._messaging(record),
        }

    def _messaging(self, record: Record) -> dict[str, str | int]:
        """The messaging.* attributes of the span of processing ``record`` (semantic conventions)."""
        return messaging_attributes(
            PROCESS,
            record.topic,
            key=record.key,
            partition=record.partition,
            offset=record.offset,
            group=self.config.group,
        )

    async def _process_one(self, record: ConsumerRecord[bytes, bytes], frame: Frame) -> asyncio.Future[Any]:
        parent = context_from_headers(record.headers)
        with self._tracer.start_as_current_span(
            "processor.process",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes=self._span_attributes(record, frame),
        ) as span:
            started = time.perf_counter()
            try:
                result = await self._invoke(frame)
            except Exception as exc:
                return await self._failed(exc, frame, span, "process()")
            finally:
                self._processing_seconds.observe(time.perf_counter() - started)
            return await self._finish(frame, result, "process()")

    async def _process_batch(self, ready: list[tuple[Record, Frame]]) -> list[asyncio.Future[Any]]:
        """One call of the batch handler for every frame in hand; each frame keeps its own span
        (in its own trace), open for the call, and its own result or dead letter."""
        frames = [frame for _, frame in ready]
        spans = [
            self._tracer.start_span(
                "processor.process",
                context=context_from_headers(record.headers),
                kind=trace.SpanKind.CONSUMER,
                attributes={
                    **self._span_attributes(record, frame),
                    "processor.batch_size": len(frames),
                },
            )
            for record, frame in ready
        ]
        started = time.perf_counter()
        items: list[Any]
        raised: Exception | None = None
        try:
            returned = await self._invoke(frames)
        except Exception as exc:
            raised = exc
            items = [exc] * len(frames)
        except BaseException:  # cancelled: the spans end here, the batch is not committed
            for span in spans:
                span.end()
            raise
        else:
            if not isinstance(returned, Sequence) or isinstance(returned, str | bytes):
                what = f"batch_process() returned {type(returned).__name__}, not a list"
                raised = RejectFrame(INVALID_BATCH_RESULT, what)
                items = [raised] * len(frames)
            elif len(returned) != len(frames):
                what = f"batch_process() returned {len(returned)} result(s) for {len(frames)} frame(s)"
                raised = RejectFrame(INVALID_BATCH_RESULT, what)
                items = [raised] * len(frames)
            else:
                items = list(returned)
        elapsed = time.perf_counter() - started
        if raised is not None and not isinstance(raised, RejectFrame | ProcessingTimeout):
            log.error("batch_process() failed on %d frame(s): %r", len(frames), raised, exc_info=raised)
        acks: list[asyncio.Future[Any]] = []
        for frame, item, span in zip(frames, items, spans, strict=True):
            # Each frame was in the handler for the whole call.
            self._processing_seconds.observe(elapsed)
            with trace.use_span(span, end_on_exit=True):
                if isinstance(item, Exception):
                    acks.append(await self._failed(item, frame, span, "batch_process()", logged=True))
                else:
                    acks.append(await self._finish(frame, item, "batch_process()"))
        return acks

    async def _failed(
        self, exc: Exception, frame: Frame, span: trace.Span, what: str, logged: bool = False
    ) -> asyncio.Future[Any]:
        """The dead letter of a frame its handler refused, failed on or ran out of time on."""
        if isinstance(exc, RejectFrame):
            span.set_attribute("frame.rejected", exc.reason)
            return await self._dead_letter(exc.reason, exc.detail, frame.routed)
        span.record_exception(exc)
        span.set_status(trace.StatusCode.ERROR, str(exc))
        if isinstance(exc, ProcessingTimeout):
            return await self._dead_letter(PROCESSING_TIMEOUT, f"{what}: {exc}", frame.routed)
        if not logged:
            log.error("%s failed on frame %s", what, frame.frame_id, exc_info=exc)
        return await self._dead_letter("processing_failed", f"{type(exc).__name__}: {exc}", frame.routed)

    async def _finish(self, frame: Frame, result: Any, what: str) -> asyncio.Future[Any]:
        """A frame's result into the outbox, in its span (whose trace the record's headers carry)."""
        pid = self.config.processor_id
        processed_at = utcnow()
        try:
            if not isinstance(result, dict):
                raise TypeError(f"{what} returned {type(result).__name__}, not a dict")
            value = FrameResult(
                frame_id=frame.frame_id,
                camera_id=frame.camera_id,
                processor_id=pid,
                capability=frame.capability,
                captured_at=frame.routed.captured_at,
                routed_at=frame.routed.routed_at,
                processed_at=processed_at,
                result=result,
            ).model_dump_json()
        except (TypeError, ValueError, PydanticSerializationError) as exc:
            return await self._dead_letter("invalid_result", f"{type(exc).__name__}: {exc}", frame.routed)
        ack = self._defer(
            self.settings.results_topic,
            frame.camera_id.encode(),
            value.encode(),
            headers_for(),
            frame.routed,
            result=True,
        )
        self._end_to_end_seconds.observe(max(0.0, (processed_at - frame.routed.captured_at).total_seconds()))
        self._processed_ok.inc()
        self.stats.processed += 1
        return ack

    def _split_by_key_prefix(self, frames: list[Routed]) -> tuple[list[Routed], list[Routed]]:
        """Frames whose pixels may be read, and those naming a key outside PROCESSOR_FRAME_KEY_PREFIX:
        a forged capture entry must not make a processor read (and publish from) any Redis key."""
        prefix = self.settings.processor_frame_key_prefix
        if not prefix:
            return frames, []
        inside = [item for item in frames if not item[1].frame_key or item[1].frame_key.startswith(prefix)]
        outside = [item for item in frames if item[1].frame_key and not item[1].frame_key.startswith(prefix)]
        return inside, outside

    async def _dead_letter(
        self,
        reason: str,
        detail: str,
        routed: RoutedFrame | None,
        raw: dict[str, Any] | None = None,
        ctx: Context | None = None,
    ) -> asyncio.Future[Any]:
        """Publish why a frame ends here; ``ctx`` is its trace (default: the current span)."""
        record = self._letter(reason, detail, routed, raw)
        key = (routed.frame_id if routed else (raw or {}).get("key") or "").encode()
        log.warning("dead-lettered %s (%s): %s", record.frame_id or "<unparsed>", reason, detail)
        DEAD_LETTERED.labels(reason, SERVICE, self.config.processor_id).inc()
        self.stats.dead_lettered[reason] += 1
        return self._defer(
            self.settings.dead_letter_topic, key, record.model_dump_json().encode(), headers_for(ctx), routed
        )

    def _letter(
        self, reason: str, detail: str, routed: RoutedFrame | None, raw: dict[str, Any] | None = None
    ) -> DeadLetter:
        return DeadLetter(
            reason=reason,
            detail=detail,
            frame_id=routed.frame_id if routed else None,
            camera_id=routed.camera_id if routed else None,
            stream_id=routed.stream_id if routed else None,
            capability=routed.capability if routed else None,
            processor_id=self.config.processor_id,
            raw=raw if raw is not None else (routed.model_dump(mode="json") if routed else {}),
            source=PROCESSOR_SOURCE,
        )


def _raw(record: ConsumerRecord[bytes, bytes]) -> dict[str, Any]:
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": (record.key or b"").decode("utf-8", "backslashreplace"),
        "value": (record.value or b"").decode("utf-8", "backslashreplace")[:4096],
    }


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "value"
    return f"{loc}: {err['msg']}"


def _settle(target: asyncio.Future[Any], done: asyncio.Future[Any]) -> None:
    if target.done():
        return
    if done.cancelled():
        target.cancel()
    elif done.exception() is not None:
        target.set_exception(done.exception())  # type: ignore[arg-type]
    else:
        target.set_result(done.result())
