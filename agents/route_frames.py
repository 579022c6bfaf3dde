"""route_frames: frames.captured -> frames.ready.<processor>, one decision per capability.

The decisions are agents.routing's (pure code); this module only applies them to Kafka
and the tables: dedupe, affinity, dead letters, holding frames when everything is full.

A captured record holds one frame or an envelope of frames (core.envelope). Every record it
leads to (routed frames, dead letters, held frames) is queued without waiting, and the
captured record is acked only once all of them are acknowledged (agents.record_acks), so a
commit never passes a frame whose sends could still be lost. A delivery that fails for good
stops the worker (``on_fatal``): it restarts from the last commit and routes again.

While a frame is held, the pixels of the frames in hand are kept in Redis (agents.held_pixels);
one whose pixels are gone by the time it could be sent is dead-lettered with the SDK's reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from aiokafka.errors import MessageSizeTooLargeError
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Link

from agents.config import RoutingConfig
from agents.dedupe_index import DedupeIndex, batch_partition, dedupe_key
from agents.frame_decode import Frame, Invalid, decode_frame, from_event
from agents.held_pixels import HeldPixels
from agents.latest_waiting import Held, LatestWaiting, Verdict, judge, parse_held
from agents.progress import ProgressWatch
from agents.record_acks import PendingRecord, RecordAcks
from agents.routing import Action, Decision, Router
from agents.sender import Headers, RecordSender
from core import envelope
from core.context import Orchestrator
from core.deadletter import count_letter, frame_letter
from core.metrics import FRAMES_DEDUPED, FRAMES_ROUTED, ROUTING_LATENCY
from frame_buffer_sdk.models import FrameEvent, utcnow
from frame_buffer_sdk.pixels import missing_pixels
from frame_buffer_sdk.telemetry import (
    PROCESS,
    PUBLISH,
    context_from_headers,
    context_from_traceparent,
    headers_for,
    messaging_attributes,
    trace_headers,
    tracer,
)

log = logging.getLogger(__name__)
_TRACER = tracer("frame_buffer.router")
HOLD_POLL_SECONDS = 0.2
REFRESH_ON_MISS_SECONDS = 0.1
TOO_LARGE_REASON = "too_large"
MAX_CACHED_AFFINITIES = 100_000


def waiting_key(camera_id: str, capability: str) -> str:
    return f"{camera_id}|{capability}"


def _tracing() -> bool:
    """Spans only where an SDK provider records them: the API's no-op tracer still costs per call."""
    return isinstance(trace.get_tracer_provider(), TracerProvider)


class FrameRouting:
    """Applies routing decisions for one worker. Called only from inside agent streams."""

    def __init__(
        self,
        orch: Orchestrator,
        config: RoutingConfig,
        router: Router,
        sender: RecordSender,
        refresh_view: Callable[[], None] | None = None,
        on_fatal: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.orch = orch
        self.config = config
        self.router = router
        self.sender = sender
        self.index = DedupeIndex(config.dedupe.window_seconds, config.dedupe.max_pairs)
        # The newest held frame per camera and capability; the table gets coalesced writes.
        self.latest = LatestWaiting()
        self.acks = RecordAcks(self._fatal)
        # Set by the worker's entrypoint to stop the worker; a test may leave it unset.
        self.on_fatal = on_fatal
        self.failure: BaseException | None = None
        # Re-reads the registry into the router; used before dead-lettering a frame for want
        # of a processor that may have registered since the last periodic refresh.
        self._refresh_view = refresh_view
        self._refreshed_at = float("-inf")
        self._ready_topics: dict[str, str] = {}
        self._routed_metric: dict[tuple[str, str], Any] = {}
        self._affinities: dict[str, dict[str, str]] = {}
        # How long a captured record has been in hand: a protected frame held for ever shows here.
        self.progress = ProgressWatch()
        self.pixels = HeldPixels(lambda: orch.redis, config.frame_ttl_seconds, prefix=config.frame_key_prefix)

    # --- entry points (one per agent) -------------------------------------------------
    async def on_captured(self, event: Any) -> None:
        """One captured record: its frames routed, the record acked once all it led to is acked."""
        started = time.perf_counter()
        self.progress.entered(time.monotonic())
        try:
            await self._acked(event, self._route_record)
        finally:
            self.progress.left(time.monotonic())
        ROUTING_LATENCY.observe(time.perf_counter() - started)

    async def on_waiting(self, event: Any) -> None:
        """A held, shed-able frame: sent when there is room, shed if a newer one of its camera waits.

        Under overload this is a hot path too: nearly every frame is held and then shed. Its
        one send (routed frame or dead letter) is queued, not awaited, and the held record is
        acked once Kafka acknowledged it, as on the captured topic. Awaiting each shed's
        acknowledgement capped shedding at about a hundred frames a second, below the rate
        frames were held, so the waiting topic's backlog grew for as long as the overload lasted
        and the newest frames reached the processor only after their pixels had expired.
        """
        await self._acked(event, self._drain_one)

    async def _acked(self, event: Any, handle: Callable[[Any, PendingRecord], Awaitable[None]]) -> None:
        message = event.message
        tp, offset = message.tp, message.offset
        # Counted once per partition and offset, acked once a delivered count snapshot covers it (core.ledger).
        ledger = self.orch.stats
        counts, token = ledger.begin(tp, offset)
        pending = self.acks.begin(tp, partial(ledger.ack, counts, offset, event.ack))
        try:
            await handle(event, pending)
        except BaseException as exc:
            # Never ack a record that was only partly handed on: the worker stops and the
            # record is handled again from the last commit.
            pending.failed = True
            ledger.abandon(counts, token)
            if not isinstance(exc, asyncio.CancelledError):
                self._fatal(exc)
            raise
        ledger.end(counts, offset, token)
        self.acks.seal(tp, pending)

    async def _drain_one(self, event: Any, pending: PendingRecord) -> None:
        held = json.loads(event.value)
        frame = FrameEvent.model_validate(held["frame"])
        capability: str = held["capability"]
        key = waiting_key(frame.camera_id, capability)
        record = Held(frame.frame_id, _held_seq(held.get("seq")))
        partition = event.message.partition
        self._ensure_loaded(partition)  # the waiting topic is co-partitioned with the captured one
        fast = from_event(frame)
        headers = _headers(event) or _frame_headers(fast)
        tp = event.message.tp
        with self.pixels.holding([frame.frame_key]):
            while True:
                if not self._still_newest(partition, key, record):
                    shed = await self._shed(frame, capability, "shed", "a newer frame of this camera is waiting")
                    self.acks.track(tp, pending, shed)
                    return
                decision = self.router.route(
                    [capability], frame.camera_id, frame.priority, self._affinity(frame.camera_id)
                )[0]
                if decision.action is Action.SEND and self.pixels.gone(frame.frame_key):
                    self.acks.track(tp, pending, await self._pixels_gone(frame, capability))
                    return
                if decision.action is Action.SEND:
                    future = await self._send(fast, decision, headers, _origin(event, "w"), partition, _routed_at())
                    self.acks.track(tp, pending, future)
                    self._flush(partition)
                    return
                if decision.action is Action.DEAD_LETTER:
                    detail = f"no healthy processor offers {capability!r}"
                    self.acks.track(tp, pending, await self._dead_letter(decision.reason, detail, frame, capability))
                    return
                await self.pixels.tick(time.monotonic())
                await asyncio.sleep(HOLD_POLL_SECONDS)

    def _still_newest(self, partition: int, key: str, record: Held) -> bool:
        """Whether a held record is still the newest of its camera and capability (else it is shed).

        Called inside the drain's stream, so the partition's due table writes go out from here too:
        a burst of holds followed by silence on the captured topic still reaches the table.
        """
        now = time.monotonic()
        self._write_waiting(self.latest.due(partition, now))
        newest = self.newest_held(partition, key)
        verdict = judge(newest, record)
        if verdict is Verdict.ADOPT:
            log.info("held frame %s is newer than the table's %s for %s: kept", record.frame_id, newest, key)
            self._write_waiting(self.latest.held(partition, key, record, now))
        return verdict is not Verdict.SHED

    def newest_held(self, partition: int, key: str) -> Held | None:
        """The newest held frame of a key: this worker's unwritten one, else the table's."""
        return self.latest.newest(partition, key) or parse_held(self.orch.tables.waiting.get(key))

    def _write_waiting(self, writes: list[tuple[str, Held]]) -> None:
        """Inside a stream of the writes' partition, so they go to that changelog partition."""
        table = self.orch.tables.waiting
        for key, held in writes:
            table[key] = held.value()

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions of the captured topic this worker lost: their next owner rebuilds the index.

        The affinity cache is dropped whole: a partition that comes back may have moved cameras
        while it was away, and the table (recovered by then) has the truth. The newest held
        frames not yet written go to the waiting table's changelog now, with their partition
        named: the revoke happens outside any stream, and the next owner reads that table.
        """
        partitions = list(partitions)
        self.index.drop(partitions)
        self._affinities.clear()
        table = self.orch.tables.waiting
        for partition, writes in self.latest.drop(partitions).items():
            for key, held in writes:
                table.send_changelog(partition, key, held.value())

    def _affinity(self, camera_id: str) -> dict[str, str]:
        """The camera's affinity, read from the table once and then from memory: only this agent
        writes it for the partitions it owns, and every write goes through here as well."""
        cached = self._affinities.get(camera_id)
        if cached is None:
            if len(self._affinities) >= MAX_CACHED_AFFINITIES:
                self._affinities.clear()
            cached = self._affinities[camera_id] = self.orch.tables.affinity[camera_id]
        return cached

    # --- one record ---------------------------------------------------------------------
    async def _route_record(self, event: Any, pending: PendingRecord) -> None:
        message = event.message
        partition: int = message.partition
        self._ensure_loaded(partition)
        value: bytes = event.value
        routed_at = _routed_at()
        headers = _headers(event)
        if not envelope.is_envelope(value):
            origin = f"{partition}:{message.offset}"
            await self._route_frame(decode_frame(value), value, event.key, origin, headers, pending, event, routed_at)
        else:
            try:
                raws = envelope.split(value)
            except envelope.EnvelopeError as exc:
                self.orch.counters.captured += 1
                await self._invalid(event.key, value, "record", str(exc), pending, event)
                return
            decoded = [decode_frame(raw) for raw in raws]
            span = self._envelope_span(decoded, message) if _tracing() else None
            try:
                for i, (raw, frame) in enumerate(zip(raws, decoded, strict=True)):
                    origin = f"{partition}:{message.offset}/{i}"
                    await self._route_frame(
                        frame, raw, event.key, origin, None, pending, event, routed_at, in_hand=(decoded, i + 1)
                    )
            finally:
                if span is not None:
                    span.end()
        self._flush(partition)
        self._write_waiting(self.latest.due(partition, time.monotonic()))

    async def _route_frame(
        self,
        decoded: Frame | Invalid,
        value: bytes,
        key: Any,
        origin: str,
        headers: Headers | None,
        pending: PendingRecord,
        event: Any,
        routed_at: str,
        in_hand: tuple[list[Frame | Invalid], int] = ([], 0),
    ) -> None:
        """``in_hand``: the envelope's frames and where the ones after this frame start."""
        if isinstance(decoded, Invalid):
            self.orch.counters.captured += 1
            await self._invalid(key, value, decoded.where, decoded.message, pending, event)
            return
        frame = decoded
        rerouted_from = frame.metadata.get("rerouted_from")
        partition: int = event.message.partition
        tp = event.message.tp
        affinity = self._affinity(frame.camera_id)
        decisions = self.router.route(frame.capabilities, frame.camera_id, frame.priority, affinity)
        if any(d.action is Action.DEAD_LETTER for d in decisions) and self._refreshed_view():
            decisions = self.router.route(frame.capabilities, frame.camera_id, frame.priority, affinity)
        affinity_changed = False
        span = None
        if headers is not None and _tracing():
            # One span per record, and a plain record holds one frame: the span is the frame's.
            parent = context_from_headers(headers) or context_from_traceparent(frame.traceparent, frame.tracestate)
            span = _TRACER.start_span("router.route", context=parent, kind=trace.SpanKind.PRODUCER)
            span.set_attribute("frame.id", frame.frame_id)
            span.set_attribute("camera.id", frame.camera_id)
            # Publish to the processor's topic (set per send below), of a record read as app_id's group.
            span.set_attributes(messaging_attributes(PUBLISH, None, key=frame.camera_id, group=self.config.app_id))
            headers = headers_for(trace.set_span_in_context(span))
        elif headers is None:
            headers = _frame_headers(frame)
        now = time.time()
        sends: list[asyncio.Future[Any]] = []
        repeated = 0
        try:
            for decision in decisions:
                if self._is_duplicate(partition, frame, decision.capability, rerouted_from, origin, now):
                    repeated += 1
                    continue
                if decision.action is Action.HOLD and (decision.protected or rerouted_from):
                    decision, gone = await self._wait_for_room(frame, decision, affinity, in_hand)
                    if gone and decision.action is Action.SEND:
                        self.acks.track(tp, pending, await self._pixels_gone(frame.event(), decision.capability))
                        continue
                if decision.action is Action.HOLD:
                    self.acks.track(tp, pending, await self._hold(frame, decision.capability, partition, origin))
                elif decision.action is Action.DEAD_LETTER:
                    future = await self._dead_letter(
                        decision.reason,
                        f"no healthy processor offers {decision.capability!r}",
                        frame.event(),
                        decision.capability,
                    )
                    self.acks.track(tp, pending, future)
                else:
                    if span is not None:
                        span.set_attribute("processor.id", decision.processor_id or "")
                        span.set_attribute("frame.capability", decision.capability)
                        span.set_attribute("routing.reason", decision.reason)
                    future = await self._send(frame, decision, headers, origin, partition, routed_at)
                    self.acks.track(tp, pending, future)
                    if span is not None:
                        topic = self._ready_topics.get(decision.processor_id or "")
                        if topic is not None:
                            span.set_attribute("messaging.destination.name", topic)
                        sends.append(future)
                    pid = decision.processor_id
                    if decision.new_affinity and pid is not None and affinity.get(decision.capability) != pid:
                        affinity = {**affinity, decision.capability: pid}
                        affinity_changed = True
        finally:
            if span is not None:
                _end_on_ack(span, sends)
        # A frame every pair of which came before in another record (the bridge mirroring again
        # after a Redis restart) was captured once already; its repeats count as deduplicated.
        if not rerouted_from and not (decisions and repeated == len(decisions)):
            self.orch.counters.captured += 1
        if affinity_changed:
            # Reassign, never mutate in place: only assignments reach the changelog.
            self.orch.tables.affinity[frame.camera_id] = affinity
            self._affinities[frame.camera_id] = affinity

    # --- steps ------------------------------------------------------------------------------
    async def _wait_for_room(
        self, frame: Frame, decision: Decision, affinity: dict[str, str], in_hand: tuple[list[Frame | Invalid], int]
    ) -> tuple[Decision, bool]:
        """Protected frames are never shed, nor are frames moved off a failed processor (they have
        waited already): this agent stops here, so Kafka holds the partition's later frames until
        the capability has room again. Meanwhile the pixels of this frame and of the envelope's
        frames after it are kept. Returns the decision that ended the wait, and whether this
        frame's pixels were found gone."""
        frames, start = in_hand
        keys = [frame.frame_key, *(f.frame_key for f in frames[start:] if isinstance(f, Frame))]
        with self.pixels.holding(keys):
            while decision.action is Action.HOLD:
                await self.pixels.tick(time.monotonic())
                await asyncio.sleep(HOLD_POLL_SECONDS)
                decision = self.router.route([decision.capability], frame.camera_id, frame.priority, affinity)[0]
            return decision, self.pixels.gone(frame.frame_key)

    async def _pixels_gone(self, frame: FrameEvent, capability: str) -> asyncio.Future[Any]:
        """A held frame whose pixels left Redis: its dead letter, with the reason a processor would
        give (``pixels_expired`` once it is older than FRAME_TTL_SECONDS)."""
        age = (utcnow() - frame.captured_at).total_seconds()
        reason, detail = missing_pixels(frame.frame_key, age, self.config.frame_ttl_seconds)
        return await self._dead_letter(reason, f"{detail}; gone while the router held the frame", frame, capability)

    def _refreshed_view(self) -> bool:
        """Refresh the view now, at most every REFRESH_ON_MISS_SECONDS (a stream of frames for a
        capability nobody offers must not rebuild it per frame). True when it did."""
        now = time.monotonic()
        if self._refresh_view is None or now - self._refreshed_at < REFRESH_ON_MISS_SECONDS:
            return False
        self._refreshed_at = now
        self._refresh_view()
        return True

    def _ensure_loaded(self, partition: int) -> None:
        """Rebuild the dedupe index of a newly assigned partition from its table batches.

        Faust recovers the table before the stream resumes, so the batches are all there. One
        scan loads every partition found that is not loaded yet (a rebalance assigns several).
        """
        if self.index.loaded(partition):
            return
        found: dict[int, list[tuple[str, Any]]] = {partition: []}
        for key, batch in self.orch.tables.dedupe.items():
            p = batch_partition(key)
            if not self.index.loaded(p) and batch:
                found.setdefault(p, []).append((key, batch))
        now = time.time()
        for p, batches in found.items():
            kept = self.index.load(p, batches, now)
            if batches:
                log.info("dedupe index of partition %d rebuilt: %d pairs from %d batches", p, kept, len(batches))

    def _flush(self, partition: int) -> None:
        """Write the partition's due batch; inside the stream, so it goes to that changelog partition."""
        flush = self.index.due(partition, time.time())
        if flush is None:
            return
        table = self.orch.tables.dedupe
        table[flush.key] = flush.pairs
        for key in flush.expired:
            table.pop(key, None)

    def _is_duplicate(
        self, partition: int, frame: Frame, capability: str, rerouted_from: Any, origin: str, now: float
    ) -> bool:
        """A pair routed before from ANOTHER record is a duplicate.

        The same record seen again (a replay after a worker crash, same partition and
        offset) is routed again: its first send may never have reached Kafka. The processor
        SDK drops a pair it already finished, so a replay costs a re-send, never a loss.
        """
        seen = self.index.get(partition, dedupe_key(frame.frame_id, capability), now)
        if not seen:
            return False
        seen_pid, _, seen_origin = seen.partition("@")
        if seen_origin == origin or (rerouted_from and seen_pid == rerouted_from):
            return False
        self.orch.counters.deduplicated += 1
        FRAMES_DEDUPED.inc()
        return True

    async def _send(
        self, frame: Frame, decision: Decision, headers: Headers, origin: str, partition: int, routed_at: str
    ) -> asyncio.Future[Any]:
        pid = decision.processor_id
        assert pid is not None
        capability = decision.capability
        topic = self._ready_topics.get(pid)
        if topic is None:
            topic = self._ready_topics[pid] = self.config.names.ready_topic(pid)
        value = frame.routed(pid, capability, routed_at)
        try:
            future = await self.sender.send(topic, frame.camera_id.encode(), value, headers)
        except MessageSizeTooLargeError as exc:
            return await self._dead_letter(
                TOO_LARGE_REASON,
                f"the routed record for {pid!r} is larger than the producer accepts ({exc})",
                frame.event(),
                capability,
            )
        self.index.put(partition, dedupe_key(frame.frame_id, capability), f"{pid}@{origin}", time.time())
        self.router.record_sent(pid, time.time())
        counters = self.orch.counters
        counters.routed += 1
        counters.routed_by_processor[pid] += 1
        if frame.metadata.get("rerouted_from"):
            counters.rerouted += 1
        metric = self._routed_metric.get((pid, capability))
        if metric is None:
            metric = self._routed_metric[(pid, capability)] = FRAMES_ROUTED.labels(pid, capability)
        metric.inc()
        return future

    async def _hold(self, frame: Frame, capability: str, partition: int, origin: str) -> asyncio.Future[Any]:
        """Every processor for the capability is CRITICAL: the frame waits in Kafka, newest per camera.

        It is the newest in memory before its held record is sent, so the drain never reads a held
        record newer than what this worker knows; the table write is coalesced (agents.latest_waiting).
        """
        event = frame.event()
        seq = _origin_seq(origin)
        key = waiting_key(frame.camera_id, capability)
        self._write_waiting(self.latest.held(partition, key, Held(frame.frame_id, seq), time.monotonic()))
        payload = json.dumps(
            {"frame": event.model_dump(mode="json"), "capability": capability, "seq": list(seq)}
        ).encode()
        return await self.sender.send(
            self.orch.topics.waiting.get_topic_name(), frame.camera_id.encode(), payload, _frame_headers(frame)
        )

    async def _invalid(
        self, key: Any, value: bytes, where: str, message: str, pending: PendingRecord, event: Any
    ) -> None:
        letter_key, letter = frame_letter(
            "invalid_frame",
            f"{where}: {message}",
            raw={"key": _text(key), "value": _text(value)},
            key=key if isinstance(key, bytes) else b"",
        )
        count_letter(self.orch, "invalid_frame")
        future = await self.sender.send(self.config.dead_letter_topic, letter_key, letter)
        self.acks.track(event.message.tp, pending, future)

    async def _dead_letter(
        self, reason: str, detail: str, frame: FrameEvent, capability: str, shed: bool = False
    ) -> asyncio.Future[Any]:
        key, value = frame_letter(reason, detail, frame, capability=capability)
        count_letter(self.orch, reason, shed)
        return await self.sender.send(self.config.dead_letter_topic, key, value)

    async def _shed(self, frame: FrameEvent, capability: str, reason: str, detail: str) -> asyncio.Future[Any]:
        """The frame's dead letter, queued; the caller acks the held record once it is delivered."""
        counters = self.orch.counters
        counters.shed += 1
        counters.shed_by_camera[frame.camera_id] += 1
        counters.shed_by_reason[reason] += 1
        return await self._dead_letter(reason, detail, frame, capability, shed=True)

    def _envelope_span(self, frames: list[Frame | Invalid], message: Any) -> Any:
        """One span for an envelope, linked to each frame's trace; the frames' own contexts travel on."""
        links = []
        for decoded in frames:
            if isinstance(decoded, Frame):
                ctx = context_from_traceparent(decoded.traceparent, decoded.tracestate)
                if ctx is not None:
                    links.append(Link(trace.get_current_span(ctx).get_span_context()))
        span = _TRACER.start_span("router.route_envelope", kind=trace.SpanKind.CONSUMER, links=links)
        span.set_attribute("messaging.batch.message_count", len(frames))
        span.set_attributes(
            messaging_attributes(
                PROCESS,
                message.topic,
                key=message.key,
                partition=message.partition,
                offset=message.offset,
                group=self.config.app_id,
            )
        )
        return span

    def _fatal(self, exc: BaseException) -> None:
        if self.failure is None:
            self.failure = exc
            log.error(
                "a routed record was not delivered (%r): stopping so the worker routes again from the last commit", exc
            )
        if self.on_fatal is not None:
            self.on_fatal(exc)


def _routed_at() -> str:
    return datetime.now(UTC).isoformat()


def _frame_headers(frame: Frame) -> list[tuple[str, bytes]]:
    """The frame's own trace context as record headers (an envelope's frames have no others)."""
    return trace_headers(frame.traceparent, frame.tracestate)


def _origin_seq(origin: str) -> tuple[int, int]:
    """(offset, index in the envelope) of a captured origin "partition:offset[/index]"."""
    offset, _, index = origin.partition(":")[2].partition("/")
    return int(offset), int(index or 0)


def _held_seq(value: Any) -> tuple[int, int] | None:
    """The sequence a held record carries; None for one held before sequences existed."""
    if isinstance(value, list) and len(value) == 2:
        return int(value[0]), int(value[1])
    return None


def _origin(event: Any, prefix: str = "") -> str:
    """Where a record sits in Kafka: the same record replayed has the same origin."""
    message = event.message
    return f"{prefix}{message.partition}:{message.offset}"


def _headers(event: Any) -> Any:
    headers = getattr(event, "headers", None)
    if headers is None and getattr(event, "message", None) is not None:
        headers = event.message.headers
    if headers is not None and not isinstance(headers, list):
        headers = list(headers.items()) if isinstance(headers, dict) else list(headers)
    return headers or None


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return "" if value is None else str(value)


def _end_on_ack(span: Any, sends: list[asyncio.Future[Any]]) -> None:
    """End the router span once Kafka acknowledged every send of its frame, not when it was
    queued; the last acknowledged record's offset goes on it. No send: it ends now."""
    if not sends:
        span.end()
        return

    def finish(done: asyncio.Future[list[Any]]) -> None:
        outcomes = [] if done.cancelled() else done.result()
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                span.set_status(trace.Status(trace.StatusCode.ERROR, f"not delivered: {outcome!r}"))
                continue
            offset, partition = getattr(outcome, "offset", None), getattr(outcome, "partition", None)
            if isinstance(offset, int):
                span.set_attribute("messaging.kafka.offset", offset)
            if isinstance(partition, int):
                span.set_attribute("messaging.destination.partition.id", str(partition))
        span.end()

    asyncio.gather(*sends, return_exceptions=True).add_done_callback(finish)
