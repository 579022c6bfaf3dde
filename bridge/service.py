"""The bridge: mirrors the capture stream into the captured topic, at least once.

One loop, one batch in flight: XREADGROUP a batch, queue its records with the producer (the
frames of one partition together, as envelopes), await all their deliveries, then XACK what
was delivered in one call. An entry is acknowledged only
after Kafka acknowledged its record, so a crash at any point leaves it pending, and the next
bridge claims it (its own PEL from "0" on start, other consumers' idle entries by XAUTOCLAIM).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError, MessageSizeTooLargeError
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from prometheus_client import start_http_server
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from bridge import letters, poison, trim
from bridge.config import BridgeConfig
from bridge.names import STATE_TTL_SECONDS, default_consumer_name
from bridge.sink import Delivery, KafkaSink
from bridge.source import CLAIM_START, CaptureSource, Entry
from bridge.throttle import STATE_GAUGE, Action, State, decide, parse_level
from core import envelope, metrics
from core.levels import Level
from core.parsing import parse_entry
from core.process import ProcessConfig
from frame_buffer_sdk.errors import FrameBufferError
from frame_buffer_sdk.heap import freeze_long_lived
from frame_buffer_sdk.kafka import ensure_topics, start_reliable_producer
from frame_buffer_sdk.keys import backpressure_key, bridge_state_key, bridges_key, trim_gap_prefix, trimmed_unread_key
from frame_buffer_sdk.logs import setup_logging
from frame_buffer_sdk.models import DeadLetter, FrameEvent, utcnow
from frame_buffer_sdk.shutdown import stop_on_signals
from frame_buffer_sdk.telemetry import (
    PUBLISH,
    context_from_traceparent,
    headers_for,
    messaging_attributes,
    setup_tracing,
    trace_headers,
    traceparent_of,
)
from frame_buffer_sdk.telemetry import tracer as get_tracer

log = logging.getLogger(__name__)

SERVICE = "bridge"
BACKPRESSURE_REFRESH_SECONDS = 0.5
REPORT_INTERVAL_SECONDS = 1.0
STARTUP_TIMEOUT_SECONDS = 60.0
MIN_BACKOFF_SECONDS = 0.1
MAX_BACKOFF_SECONDS = 5.0
DEAD_LETTER_PARTITIONS = 1

# Failures of a server, not of an entry: wait, then retry what is still pending.
_TRANSIENT = (RedisError, KafkaError, OSError)
# A reply later than BLOCK plus this is taken as lost: the read fails and is retried, and what it
# had claimed stays pending for this consumer, re-read first. Without a socket timeout a lost
# reply would hold the bridge, and its shutdown, forever.
REDIS_REPLY_GRACE_SECONDS = 10.0
# A batch whose Kafka deliveries are still open after this is given up as incomplete: its entries
# stay pending and are sent again (at-least-once), instead of the bridge waiting forever on a
# broker that stopped answering. Longer than the producer's own request timeout (30 s).
DELIVERY_TIMEOUT_SECONDS = 45.0


class BatchIncomplete(FrameBufferError):
    """Kafka did not acknowledge every record of a batch; the entries of those stay pending."""


@dataclass(slots=True)
class _InFlight:
    """One record queued with the producer: a frame, an envelope of frames, or a dead letter."""

    stream_ids: list[str]
    future: Delivery
    reason: str | None  # None: frames for the captured topic; else the dead-letter reason
    spans: list[Span] = field(default_factory=list)


@dataclass(slots=True)
class _Ready:
    """A parsed frame waiting to be grouped with the others of its partition."""

    stream_id: str
    frame: FrameEvent
    value: bytes
    raw: dict[str, str]
    span: Span | None
    headers: list[tuple[str, bytes]]


class Bridge:
    """Mirrors ``config.capture_stream`` into ``config.captured_topic`` until asked to stop."""

    def __init__(
        self,
        config: BridgeConfig,
        *,
        consumer: str | None = None,
        redis: aioredis.Redis | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.config = config
        self.consumer = consumer or config.consumer_name or default_consumer_name()
        self.redis: aioredis.Redis = (
            redis
            if redis is not None
            else config.redis.client(socket_timeout=config.block_ms / 1000 + REDIS_REPLY_GRACE_SECONDS)
        )
        self._owns_redis = redis is None
        self._tracer = tracer or get_tracer("bridge")
        self.source = CaptureSource(self.redis, config.capture_stream, config.capture_group, self.consumer)
        self._naive_tz = config.capture_timezone
        self._producer: AIOKafkaProducer | None = None
        self._sink: KafkaSink | None = None
        self.state = State.RUNNING
        self.mirrored_total = 0
        self.dead_lettered_total = 0
        self._level = Level.NORMAL
        self._level_read_at = float("-inf")
        self._next_claim = 0.0
        self._stop = asyncio.Event()
        self._serving = False
        self._served = asyncio.Event()
        self._released = False
        self._reads = poison.ReadCounts()

    # --- lifecycle -----------------------------------------------------------------------
    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def request_stop(self) -> None:
        """Finish the batch in flight, then return from serve(). Safe from a signal handler."""
        self._stop.set()

    async def start(self) -> None:
        """Wait for Redis and Kafka (start order of the services does not matter), then set up."""
        if self._sink is not None:
            return
        s = self.config
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type((RedisConnectionError, KafkaConnectionError, OSError)),
            wait=wait_exponential(min=0.2, max=3),
            stop=stop_after_delay(STARTUP_TIMEOUT_SECONDS),
            reraise=True,
        ):
            with attempt:
                await self.source.ensure_group()
                await ensure_topics(
                    s.bootstrap_servers,
                    [(s.captured_topic, s.captured_partitions), (s.dead_letter_topic, DEAD_LETTER_PARTITIONS)],
                    s.topic_replication_factor,
                    security=s.kafka_security,
                )
                self._producer = await start_reliable_producer(
                    s.bootstrap_servers, f"bridge-{self.consumer}", security=s.kafka_security
                )
        assert self._producer is not None
        self._sink = KafkaSink(self._producer, s.captured_topic, s.dead_letter_topic)
        log.info(
            "bridge %s: %s (group %s) -> %s, bad entries -> %s",
            self.consumer,
            s.capture_stream,
            s.capture_group,
            s.captured_topic,
            s.dead_letter_topic,
        )

    async def serve(self) -> None:
        """Run until request_stop() or close(); the batch in flight is always finished."""
        self._serving = True
        try:
            await self.start()
            reporter = asyncio.create_task(self._report_loop(), name=f"bridge-report-{self.consumer}")
            try:
                await self._loop()
            finally:
                reporter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reporter
        finally:
            self._served.set()

    async def close(self) -> None:
        """Stop serving (after the batch in flight), flush the producer and let go of the servers."""
        self.request_stop()
        if self._serving:
            await self._served.wait()
        if self._released:
            return
        self._released = True
        if self._producer is not None:
            await self._producer.stop()
        with contextlib.suppress(RedisError, OSError):
            await self.redis.delete(bridge_state_key(self.config.app_id, self.consumer))
            await self.redis.zrem(bridges_key(self.config.app_id), self.consumer)
        if self._owns_redis:
            await self.redis.aclose()
        log.info(
            "bridge %s stopped: %d mirrored, %d dead-lettered",
            self.consumer,
            self.mirrored_total,
            self.dead_lettered_total,
        )

    # --- the loop ------------------------------------------------------------------------
    async def _loop(self) -> None:
        backoff = MIN_BACKOFF_SECONDS
        while not self._stop.is_set():
            try:
                await self._step()
                backoff = MIN_BACKOFF_SECONDS
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                # The stream or group was deleted under us: recreate them and carry on.
                log.warning("bridge %s: %s; recreating the group", self.consumer, exc)
                await self.source.ensure_group()
            except (*_TRANSIENT, BatchIncomplete) as exc:
                log.warning(
                    "bridge %s: %s: %s; retrying in %.1f s, unacknowledged entries stay pending",
                    self.consumer,
                    type(exc).__name__,
                    exc,
                    backoff,
                )
                self._next_claim = 0.0  # re-read our own pending entries first
                await self._pause(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    async def _step(self) -> None:
        action = await self._action()
        if not action.reads:
            await self._pause(action.sleep_after)
            return
        if time.monotonic() >= self._next_claim:
            await self._claim(action)
            self._next_claim = time.monotonic() + self.config.claim_interval
            if self._stop.is_set():
                return
        await self._count_trimmed_unread()
        entries = await self.source.read_new(action.batch_size, self.config.block_ms)
        if entries:
            await self._mirror(entries)
        if action.sleep_after:
            await self._pause(action.sleep_after)

    async def _action(self) -> Action:
        now = time.monotonic()
        if now - self._level_read_at >= BACKPRESSURE_REFRESH_SECONDS:
            self._level = parse_level(await self.redis.get(backpressure_key(self.config.app_id)))
            self._level_read_at = now
        action = decide(self._level, self.config.batch_size)
        if action.state is not self.state:
            log.info("bridge %s: backpressure %s -> %s", self.consumer, self._level.value, action.state.value)
            self.state = action.state
        metrics.BRIDGE_THROTTLE.set(STATE_GAUGE[action.state])
        return action

    async def _claim(self, action: Action) -> None:
        """Our own pending entries (a crash or a failed batch), then idle ones of dead consumers."""
        after = "0"
        while not self._stop.is_set():
            entries = await self.source.read_own_pending(after, action.batch_size)
            if not entries:
                break
            await self._mirror(entries, await self._delivery_counts(entries))
            after = entries[-1].stream_id
        cursor = CLAIM_START
        while not self._stop.is_set():
            cursor, entries = await self.source.claim_idle(cursor, self.config.claim_idle_ms, action.batch_size)
            if entries:
                log.info("bridge %s: claimed %d idle pending entries", self.consumer, len(entries))
                await self._mirror(entries, await self._delivery_counts(entries))
            if cursor == CLAIM_START:
                break

    async def _count_trimmed_unread(self) -> None:
        """Before reading on: entries MAXLEN trimmed ahead of the group are counted, not skipped silently."""
        s = self.config
        gap = await trim.count_gap(self.redis, s.capture_stream, s.capture_group, trim_gap_prefix(s.app_id))
        if not gap:
            return
        total = await self.redis.incrby(trimmed_unread_key(s.app_id), gap)
        metrics.STREAM_TRIMMED_UNREAD.inc(gap)
        log.warning(
            "bridge %s: %d capture entries were trimmed (MAXLEN) before any bridge read them (%d in all)",
            self.consumer,
            gap,
            total,
        )

    async def _delivery_counts(self, entries: list[Entry]) -> dict[str, int]:
        ids = [e.stream_id for e in entries]
        return await poison.delivery_counts(
            self.redis, self.config.capture_stream, self.config.capture_group, self.consumer, ids
        )

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stop.wait()

    # --- one batch -----------------------------------------------------------------------
    async def _mirror(self, entries: list[Entry], deliveries: dict[str, int] | None = None) -> None:
        """Send one read's entries and acknowledge those Kafka took.

        The frames of one partition travel together as envelopes (one record, many frames, in
        stream order), so a busy stream costs the router one record per read and partition
        instead of one per frame. Entries are acknowledged per record, after its delivery report.
        ``deliveries``: how often each entry was delivered before (re-reads of pending ones).
        """
        # Timed from the read's reply: the BLOCK wait of an idle stream is not batch work.
        started = time.perf_counter()
        flights: list[_InFlight] = []
        send_error: BaseException | None = None
        by_partition: dict[int, list[_Ready]] = {}
        traced = self._traced()
        limit = self.config.max_deliveries
        try:
            for entry in entries:
                ours = self._reads.see(entry.stream_id)
                if deliveries and poison.is_poison(poison.elsewhere(deliveries.get(entry.stream_id, 1), ours), limit):
                    flights.append(await self._dead_letter(poison.poison_letter(entry, limit)))
                    continue
                prepared = self._prepare(entry, traced)
                if isinstance(prepared, DeadLetter):
                    flights.append(await self._dead_letter(prepared))
                else:
                    assert self._sink is not None
                    partition = await self._sink.partition_of(prepared.frame.camera_id)
                    by_partition.setdefault(partition, []).append(prepared)
            for partition, frames in by_partition.items():
                for part in envelope.chunks([len(f.value) for f in frames]):
                    flights.append(await self._send_frames(partition, frames[part.start : part.stop]))
        except (KafkaError, OSError) as exc:
            # What was not queued stays pending; what was queued is still awaited and acked. A
            # partition's later records are never queued after a failed one, so order holds.
            send_error = exc
        results = await _deliveries(flights, DELIVERY_TIMEOUT_SECONDS)
        await self._dead_letter_refused(entries, flights, results)
        delivered: list[str] = []
        failures: list[BaseException] = []
        mirrored = 0
        for flight, result in zip(flights, results, strict=True):
            if isinstance(result, BaseException):
                failures.append(result)
                for span in flight.spans:
                    span.set_status(Status(StatusCode.ERROR, f"not delivered: {result!r}"))
            else:
                delivered.extend(flight.stream_ids)
                if flight.reason is None:
                    mirrored += len(flight.stream_ids)
                    _set_delivered(flight.spans, result)
                else:
                    metrics.DEAD_LETTERED.labels(flight.reason, SERVICE, "").inc(len(flight.stream_ids))
            for span in flight.spans:
                span.end()
        dead = len(delivered) - mirrored
        self.mirrored_total += mirrored
        self.dead_lettered_total += dead
        metrics.BRIDGE_MIRRORED.inc(mirrored)
        await self.source.ack(delivered)
        self._reads.forget(delivered)
        metrics.BRIDGE_BATCH_SECONDS.observe(time.perf_counter() - started)
        if send_error is not None or failures:
            first = send_error or failures[0]
            raise BatchIncomplete(
                f"{len(entries) - len(delivered)} of {len(entries)} entries not delivered ({first!r})"
            )

    async def _dead_letter_refused(self, entries: list[Entry], flights: list[_InFlight], results: list[Any]) -> None:
        """Records Kafka refused for good are replaced, in place, by the dead letters of their entries.

        An envelope refused for good (a topic the bridge may not write, or a broker whose record
        limit is below the envelope cap) dead-letters each of its entries: retrying it would
        wedge the stream behind it.
        """
        refused = [
            i
            for i, (flight, result) in enumerate(zip(flights, results, strict=True))
            if flight.reason is None and isinstance(result, BaseException) and poison.refused_for_good(result)
        ]
        if not refused:
            return
        by_id = {entry.stream_id: entry for entry in entries}
        for i in refused:
            flight, error = flights[i], results[i]
            for span in flight.spans:
                span.set_status(Status(StatusCode.ERROR, f"refused for good: {error!r}"))
            letters_of = [
                await self._dead_letter(poison.refused_letter(by_id[sid], error)) for sid in flight.stream_ids
            ]
            outcomes = await _deliveries(letters_of, DELIVERY_TIMEOUT_SECONDS)
            failed = next((o for o in outcomes if isinstance(o, BaseException)), None)
            # The flight now stands for its dead letters: delivered only if every one of them was.
            flights[i] = _InFlight(flight.stream_ids, letters_of[0].future, poison.REFUSED_REASON, flight.spans)
            results[i] = failed if failed is not None else outcomes[0]

    def _traced(self) -> bool:
        tracer = self._tracer
        if isinstance(tracer, trace.ProxyTracer):  # the global tracer: real once an SDK provider is set
            return isinstance(trace.get_tracer_provider(), SdkTracerProvider)
        return not isinstance(tracer, trace.NoOpTracer)

    def _prepare(self, entry: Entry, traced: bool) -> _Ready | DeadLetter:
        if not entry.fields:
            return letters.for_deleted(entry.stream_id)
        outcome = parse_entry(entry.fields, entry.stream_id, naive_tz=self._naive_tz)
        frame = outcome.frame
        if frame is None:
            assert outcome.error is not None
            return letters.for_parse_error(outcome.error, entry.stream_id, outcome.raw)
        span: Span | None = None
        if not traced:
            # Without a recording tracer a span costs a context parse and an object per frame for
            # nothing: the capture's own trace context travels on unchanged.
            headers = trace_headers(frame.traceparent, frame.tracestate)
        else:
            parent = context_from_traceparent(frame.traceparent, frame.tracestate)
            span = self._tracer.start_span("bridge.mirror", context=parent, kind=SpanKind.PRODUCER)
            span.set_attribute("frame.id", frame.frame_id)
            span.set_attribute("camera.id", frame.camera_id)
            span.set_attribute("stream.id", entry.stream_id)
            span.set_attributes(messaging_attributes(PUBLISH, self.config.captured_topic, key=frame.camera_id))
            ctx = trace.set_span_in_context(span)
            headers = headers_for(ctx)
            # Inside an envelope a frame has no headers of its own: its trace travels in the frame.
            frame = frame.model_copy(update={"traceparent": traceparent_of(ctx)})
        return _Ready(entry.stream_id, frame, frame.model_dump_json().encode(), outcome.raw, span, headers)

    async def _send_frames(self, partition: int, frames: list[_Ready]) -> _InFlight:
        assert self._sink is not None
        ids = [f.stream_id for f in frames]
        spans = [f.span for f in frames if f.span is not None]
        try:
            if len(frames) == 1:
                only = frames[0]
                future = await self._sink.send_frame(only.frame, only.value, only.headers, partition)
            else:
                future = await self._sink.send_envelope([f.value for f in frames], frames[0].frame, partition)
        except MessageSizeTooLargeError as exc:
            if len(frames) > 1:
                raise  # envelopes are capped far below the limit; only a lone frame is refused
            only = frames[0]
            if only.span is not None:
                only.span.set_status(Status(StatusCode.ERROR, "record too large"))
                only.span.end()
            record = letters.letter(
                letters.TOO_LARGE_REASON,
                f"the frame's record is larger than the producer accepts ({exc})",
                only.stream_id,
                only.raw,
                only.frame.frame_id,
                only.frame.camera_id,
            )
            return await self._dead_letter(record)
        return _InFlight(ids, future, None, spans)

    async def _dead_letter(self, record: DeadLetter) -> _InFlight:
        assert self._sink is not None and record.stream_id is not None
        log.debug("bridge %s: dead-letter %s %s: %s", self.consumer, record.stream_id, record.reason, record.detail)
        return _InFlight([record.stream_id], await self._sink.send_dead_letter(record), record.reason)

    # --- state report --------------------------------------------------------------------
    async def _report_loop(self) -> None:
        last_total = self.mirrored_total + self.dead_lettered_total
        last_at = time.monotonic()
        rate = 0.0
        failing = False
        while True:
            try:
                await self._report(rate)
                failing = False
            except (RedisError, OSError) as exc:
                if not failing:
                    log.warning("bridge %s: cannot report state: %s", self.consumer, exc)
                failing = True
            await asyncio.sleep(REPORT_INTERVAL_SECONDS)
            now = time.monotonic()
            total = self.mirrored_total + self.dead_lettered_total
            rate = (total - last_total) / max(now - last_at, 1e-9)
            last_total, last_at = total, now

    def state_document(
        self, backlog: int, pending: int, rate: float, trimmed_unread: int | None = None
    ) -> dict[str, Any]:
        return {
            "trimmed_unread": trimmed_unread,
            "consumer": self.consumer,
            "state": self.state.value,
            "backlog": backlog,
            "pending": pending,
            "mirrored_total": self.mirrored_total,
            "dead_lettered_total": self.dead_lettered_total,
            "rate": round(rate, 2),
            "at": utcnow().isoformat(),
        }

    async def _report(self, rate: float) -> None:
        group = await self.source.group_state()
        metrics.STREAM_BACKLOG.set(group.backlog)
        metrics.STREAM_PENDING.set(group.pending)
        lost = await self.redis.get(trimmed_unread_key(self.config.app_id))
        doc = self.state_document(group.backlog, group.pending, rate, int(lost or 0))
        if self.config.trim_acked:
            await trim.trim_acknowledged(self.redis, self.config.capture_stream)
        key = bridge_state_key(self.config.app_id, self.consumer)
        index = bridges_key(self.config.app_id)
        now = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(key, json.dumps(doc), ex=STATE_TTL_SECONDS)
            pipe.zadd(index, {self.consumer: now})
            # Bridges that stopped reporting leave the index too, so it stays as small as the fleet.
            pipe.zremrangebyscore(index, "-inf", now - STATE_TTL_SECONDS)
            await pipe.execute()


def _set_delivered(spans: list[Span], metadata: Any) -> None:
    """The acknowledged record's partition and offset on its frames' spans (an envelope's are shared)."""
    offset, partition = getattr(metadata, "offset", None), getattr(metadata, "partition", None)
    for span in spans:
        if isinstance(offset, int):
            span.set_attribute("messaging.kafka.offset", offset)
        if isinstance(partition, int):
            span.set_attribute("messaging.destination.partition.id", str(partition))


def run_bridge(config: BridgeConfig, process: ProcessConfig) -> None:
    """The bridge process: serve until SIGTERM/SIGINT, finish the batch in flight, exit."""
    setup_logging(process.log_level)
    provider = setup_tracing(process.service_name, process.otel_exporter_otlp_endpoint, process.otel_sampling_ratio)
    if process.metrics_port:
        metrics.export_build_info("bridge")
        if process.metrics_v1_aliases:
            metrics.register_v1_aliases()
        start_http_server(process.metrics_port, addr=process.metrics_host)
    freeze_long_lived("bridge start")
    try:
        asyncio.run(_serve_until_signalled(config, process.shutdown_grace_seconds))
    finally:
        if provider is not None:
            provider.shutdown()


async def _deliveries(flights: list[_InFlight], within: float) -> list[Any]:
    """Each flight's delivery result or exception; a delivery still open after ``within`` is a
    KafkaTimeoutError (not acknowledged: its entry stays pending)."""
    futures = [asyncio.ensure_future(f.future) for f in flights]
    if futures:
        await asyncio.wait(futures, timeout=within)
    results: list[Any] = []
    for future in futures:
        if future.done() and not future.cancelled():
            results.append(future.exception() or future.result())
        else:
            future.cancel()  # aiokafka skips a done future when the report comes after all
            results.append(KafkaTimeoutError(f"no delivery report within {within:.0f} s"))
    return results


async def _serve_until_signalled(config: BridgeConfig, grace_seconds: float) -> None:
    bridge = Bridge(config)
    try:
        with stop_on_signals(bridge.request_stop, f"bridge {bridge.consumer}", grace_seconds):
            await bridge.serve()
    finally:
        await bridge.close()
