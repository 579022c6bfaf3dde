"""Reading ``frames.results`` downstream, each (frame, capability) once.

    async with ResultsReader(settings, group="alerts") as reader:
        async for result in reader:          # a FrameResult
            await store(result)              # handled: committed with the next ones

Processors publish at least once. A replica killed after the broker appended its results and
before it wrote its done markers has its batch published again by its successor (see
``frame_buffer_sdk.done``); the copy has the same frame id and capability (a peer processor of
the capability may have published it, so the processor id can differ). A result is keyed by
its camera, so both copies land in the same partition, hence in the same reader of a group,
a few batches apart: a bounded memory of the last ``window`` keys drops them.

Delivery to you is at least once too: a record's offset is committed only once you asked for
the next one (or on ``commit()``/``stop()``), so a crash while handling a result hands it out
again after a restart, when the in-memory window is empty. Make the handling idempotent by
the same key (an upsert) if a duplicate after a restart matters.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Hashable
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import ConsumerStoppedError, KafkaError
from pydantic import ValidationError

from frame_buffer_sdk.gaps import GapGuard
from frame_buffer_sdk.models import FrameResult
from frame_buffer_sdk.offsets import start_uncommitted_at_first
from frame_buffer_sdk.settings import ProcessorSettings

log = logging.getLogger(__name__)

DEFAULT_WINDOW = 100_000
"""Keys remembered: a redelivered batch comes within one session timeout of its first copy."""


def result_key(result: FrameResult) -> Hashable:
    """(frame_id, capability): the pair the processors' done markers make unique."""
    return (result.frame_id, result.capability)


class RecentKeys:
    """The last ``size`` keys seen, oldest forgotten first."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("the dedupe window must hold at least one key")
        self.size = size
        self._keys: OrderedDict[Hashable, None] = OrderedDict()

    def seen(self, key: Hashable) -> bool:
        """True if ``key`` is among the last ``size`` keys; remembers it either way."""
        if key in self._keys:
            self._keys.move_to_end(key)
            return True
        self._keys[key] = None
        if len(self._keys) > self.size:
            self._keys.popitem(last=False)
        return False

    def __len__(self) -> int:
        return len(self._keys)


class _CommitOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Commits before partitions go; a new group's partitions (from_beginning) start at their
    first record, not at the broker's earliest offset (frame_buffer_sdk.offsets)."""

    def __init__(self, reader: ResultsReader, consumer: AIOKafkaConsumer) -> None:
        self._reader = reader
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._reader.commit()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self._reader.gaps.reset(assigned)
        if self._reader.from_beginning:
            await start_uncommitted_at_first(self._consumer, assigned)


class ResultsReader:
    """An async iterator of the :class:`FrameResult` records of ``RESULTS_TOPIC``, without the
    duplicates the processors' at-least-once window lets through.

    ``group``: the consumer group (each downstream service its own). ``window``: how many keys
    to remember. ``key``: what makes a result unique (default ``(frame_id, capability)``; say
    ``lambda r: (r.frame_id, r.processor_id)`` to keep one result per processor instead).
    ``from_beginning``: a new group starts at the oldest record, else at the newest. Records
    that are not a FrameResult are skipped (and counted in ``invalid``).
    """

    def __init__(
        self,
        settings: ProcessorSettings,
        group: str,
        *,
        window: int = DEFAULT_WINDOW,
        key: Callable[[FrameResult], Hashable] = result_key,
        from_beginning: bool = True,
        commit_interval: float = 5.0,
        topic: str | None = None,
    ) -> None:
        self.settings = settings
        self.group = group
        self.topic = topic or settings.results_topic
        self.key = key
        self.commit_interval = commit_interval
        self.from_beginning = from_beginning
        self.duplicates = 0
        self.invalid = 0
        self._recent = RecentKeys(window)
        # Results past a gap in a fetch are read again from it (frame_buffer_sdk.gaps).
        self.gaps: GapGuard[TopicPartition] = GapGuard()
        self._consumer: AIOKafkaConsumer | None = None
        # Next offset to commit per partition: records handed out and asked past, or skipped.
        self._handled: dict[TopicPartition, int] = {}
        self._pending: tuple[TopicPartition, int] | None = None
        self._committed_at = time.monotonic()

    async def start(self) -> None:
        s = self.settings
        consumer = AIOKafkaConsumer(
            **s.kafka_security.client_kwargs(),
            bootstrap_servers=s.bootstrap_servers,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if self.from_beginning else "latest",
            session_timeout_ms=int(s.broker_session_timeout * 1000),
            rebalance_timeout_ms=int(s.broker_rebalance_timeout * 1000),
            heartbeat_interval_ms=int(s.broker_heartbeat_interval * 1000),
        )
        consumer.subscribe([self.topic], listener=_CommitOnRevoke(self, consumer))
        try:
            await consumer.start()
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer

    async def stop(self) -> None:
        """Commits what was handed out (the last one counts as handled) and leaves the group."""
        consumer = self._consumer
        if consumer is None:
            return
        self._settle()
        try:
            await self.commit()
        finally:
            self._consumer = None
            await consumer.stop()

    async def __aenter__(self) -> ResultsReader:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self._pending = None  # the result in hand may not be handled: hand it out again
        await self.stop()

    def __aiter__(self) -> AsyncIterator[FrameResult]:
        return self

    async def __anext__(self) -> FrameResult:
        """The next result not seen within the window; asking for it marks the previous handled."""
        consumer = self._require_consumer()
        self._settle()
        while True:
            if time.monotonic() - self._committed_at >= self.commit_interval:
                await self.commit()
            try:
                record = await consumer.getone()
            except ConsumerStoppedError:  # stop() from another task ends the iteration
                raise StopAsyncIteration from None
            tp = TopicPartition(record.topic, record.partition)
            _, again = self.gaps.contiguous(tp, [record])
            if again is not None:
                consumer.seek(tp, again)
                continue
            try:
                result = FrameResult.model_validate_json(record.value or b"")
            except ValidationError as exc:
                self.invalid += 1
                log.warning("skipping a record at %s:%d that is not a FrameResult: %s", tp, record.offset, exc)
                self._handled[tp] = record.offset + 1
                continue
            if self._recent.seen(self.key(result)):
                self.duplicates += 1
                self._handled[tp] = record.offset + 1
                continue
            self._pending = (tp, record.offset + 1)
            return result

    async def commit(self) -> None:
        """Commits the offsets of every result handled so far (the one in hand is not, yet)."""
        consumer = self._consumer
        self._committed_at = time.monotonic()
        if consumer is None or not self._handled:
            return
        owned = consumer.assignment()
        offsets = {tp: offset for tp, offset in self._handled.items() if tp in owned}
        self._handled.clear()
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:  # a rebalance took them: their new reader hands them out again
            log.warning("commit of results offsets failed: %r", exc)

    def _settle(self) -> None:
        if self._pending is not None:
            tp, offset = self._pending
            self._handled[tp] = offset
            self._pending = None

    def _require_consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("ResultsReader.start() first (or use it as an async context manager)")
        return self._consumer
