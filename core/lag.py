"""Commit lag of consumer groups: how many records each group still has to consume.

lag(partition) = end offset - committed offset of the group, clamped at 0; a processor's
lag is the sum over its topic's partitions. A partition the group never committed on
counts from the partition's log start offset, which is where a consumer with
``auto_offset_reset="earliest"`` (the SDK's and Faust's setting) begins: a new group's
lag is everything the topic holds.

End offsets come from the FETCH highwater, not from ListOffsets: the embedded broker
(Tansu) answers ListOffsets(latest) with a number that is too small once producers batch.
One group-less consumer is assigned every watched partition and kept paused between
samples, so it costs nothing while idle; a sample moves each partition to its last known
end, resumes, and waits for a fetch response received after the sample began. Such a
fetch at the end of the log carries no records, only the fresh highwater.

Only topics that already exist are assigned: Tansu creates any topic a metadata request
names, and a sampler must never create a processor's topic with the wrong partition count.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from core.settings import Settings
from frame_buffer_sdk.kafka_security import PLAINTEXT, KafkaSecurity

log = logging.getLogger(__name__)

Watch = tuple[str, str]
"""(topic, consumer group) whose lag to sample."""

_POLL_SECONDS = 0.005
_TOPIC_REFRESH_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class LagSample:
    """One group's lag on one topic at one moment.

    ``committed[p]`` is the group's committed offset on partition p, or the log start offset
    when the group has committed nothing there yet. ``complete`` is False when some
    partition's end could not be refreshed in this sample (its last known end was used).
    A topic that does not exist yet gives empty maps and zero totals.
    """

    per_partition: dict[int, int]
    committed: dict[int, int]
    end: dict[int, int]
    total: int
    committed_total: int
    at: float
    complete: bool = True


def processor_watch(settings: Settings, processor_id: str) -> Watch:
    """The ready topic of a processor and the consumer group the SDK consumes it with."""
    return settings.ready_topic(processor_id), settings.processor_group(processor_id)


def router_watch(settings: Settings) -> Watch:
    """The routing agents' own input: the captured topic, consumed by the Faust app's group."""
    return settings.captured_topic, settings.app_id


def build_sample(
    end: Mapping[int, int],
    committed: Mapping[int, int | None],
    start: Mapping[int, int],
    at: float,
    complete: bool = True,
) -> LagSample:
    """Pure arithmetic of a sample: a missing or negative commit counts from the log start."""
    per_partition: dict[int, int] = {}
    effective: dict[int, int] = {}
    for partition, end_offset in end.items():
        offset = committed.get(partition)
        if offset is None or offset < 0:
            offset = min(max(start.get(partition, 0), 0), end_offset)
        effective[partition] = offset
        per_partition[partition] = max(0, end_offset - offset)
    return LagSample(
        per_partition=per_partition,
        committed=effective,
        end=dict(end),
        total=sum(per_partition.values()),
        committed_total=sum(effective.values()),
        at=at,
        complete=complete,
    )


class LagSampler:
    """Samples many (topic, group) watches with one consumer and one admin client.

    Not safe for concurrent ``sample`` calls (the owner loops, one sample at a time).
    Starts lazily on the first sample; ``close()`` releases the connections.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        fetch_timeout: float = 2.0,
        client_id: str = "lag-sampler",
        *,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._security = security
        self._fetch_timeout = fetch_timeout
        self._client_id = client_id
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._partitions: dict[str, list[int]] = {}
        self._partitions_at = 0.0
        self._assigned: frozenset[TopicPartition] = frozenset()
        self._end: dict[TopicPartition, int] = {}
        self._coordinators: dict[str, int] = {}

    async def start(self) -> None:
        if self._consumer is not None:
            return
        consumer = AIOKafkaConsumer(
            **self._security.client_kwargs(),
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # An end-of-log fetch must come back at once with the highwater instead of
            # long-polling: partitions are resumed only during a sample, so no busy loop.
            # (0 would be ideal, but then no fetch ever completes with aiokafka on Tansu.)
            fetch_max_wait_ms=1,
            max_partition_fetch_bytes=64 * 1024,
            fetch_max_bytes=1 << 20,
        )
        # Short requests: a sample is taken every second or so, a late answer is worthless.
        admin = AIOKafkaAdminClient(
            **self._security.client_kwargs(),
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            request_timeout_ms=5000,
        )
        await consumer.start()
        try:
            await admin.start()
        except BaseException:
            await consumer.stop()
            raise
        self._consumer, self._admin = consumer, admin

    async def close(self) -> None:
        consumer, admin = self._consumer, self._admin
        self._consumer = self._admin = None
        self._assigned = frozenset()
        if consumer is not None:
            await consumer.stop()
        if admin is not None:
            await admin.close()

    async def __aenter__(self) -> LagSampler:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def sample(self, watches: Mapping[str, Watch]) -> dict[str, LagSample]:
        """Lag of every watch, keyed like ``watches``.

        A watch whose group offsets could not be read is left out (and logged): a missing
        key means "unknown", never "no lag".
        """
        await self.start()
        at = time.time()
        topics = {topic for topic, _ in watches.values()}
        await self._refresh_partitions(topics)
        tps = [TopicPartition(t, p) for t in sorted(topics) for p in self._partitions.get(t, [])]
        fresh = await self._refresh_ends(tps)

        groups: dict[str, list[TopicPartition]] = {}
        for topic, group in watches.values():
            groups.setdefault(group, []).extend(TopicPartition(topic, p) for p in self._partitions.get(topic, []))
        committed_by_group = await self._committed(groups)
        uncommitted = {
            tp
            for group, offsets in committed_by_group.items()
            for tp in groups[group]
            if offsets.get(tp) is None and self._end.get(tp, 0) > 0
        }
        start = await self._log_start(uncommitted)

        out: dict[str, LagSample] = {}
        for name, (topic, group) in watches.items():
            offsets = committed_by_group.get(group)
            if offsets is None:
                continue
            parts = [p for p in self._partitions.get(topic, []) if TopicPartition(topic, p) in self._end]
            out[name] = build_sample(
                end={p: self._end[TopicPartition(topic, p)] for p in parts},
                committed={p: offsets.get(TopicPartition(topic, p)) for p in parts},
                start={p: start.get(TopicPartition(topic, p), 0) for p in parts},
                at=at,
                complete=all(TopicPartition(topic, p) in fresh for p in self._partitions.get(topic, [])),
            )
        return out

    async def _refresh_partitions(self, topics: set[str]) -> None:
        """Partition lists of the existing watched topics; listing never creates a topic."""
        assert self._admin is not None
        now = time.monotonic()
        if topics <= self._partitions.keys() and now - self._partitions_at < _TOPIC_REFRESH_SECONDS:
            return
        try:
            described: list[dict[str, Any]] = await self._admin.describe_topics(None)
        except KafkaError as exc:
            log.warning("lag sampler: could not list topics: %r", exc)
            return
        found = {
            d["topic"]: sorted(p["partition"] for p in d["partitions"]) for d in described if d.get("error_code") == 0
        }
        self._partitions = {t: found[t] for t in topics if t in found}
        self._partitions_at = now

    async def _refresh_ends(self, tps: list[TopicPartition]) -> set[TopicPartition]:
        """Fresh highwaters of ``tps`` into ``self._end``; returns the partitions refreshed."""
        assert self._consumer is not None
        consumer = self._consumer
        if frozenset(tps) != self._assigned:
            consumer.assign(tps)
            # Synchronously after assign(): the fetcher gets no chance to fetch unpaused.
            consumer.pause(*tps)
            for tp in tps:
                consumer.seek(tp, self._end.get(tp, 0))
            self._assigned = frozenset(tps)
        if not tps:
            return set()
        for tp in tps:
            # Back to the end of the log; seek also drops records a fetch brought in
            # after the end had moved on, which would keep the partition from fetching.
            consumer.seek(tp, max(consumer.highwater(tp) or 0, self._end.get(tp, 0)))
        began_ms = int(time.time() * 1000)
        consumer.resume(*tps)
        fresh: set[TopicPartition] = set()
        deadline = time.monotonic() + self._fetch_timeout
        try:
            while True:
                for tp in tps:
                    stamp = consumer.last_poll_timestamp(tp)
                    # Strictly later than the ms the sample began: the response was sent
                    # for a fetch issued after resume(), so it saw every earlier produce.
                    if stamp is not None and stamp > began_ms:
                        fresh.add(tp)
                if len(fresh) == len(tps) or time.monotonic() >= deadline:
                    break
                await asyncio.sleep(_POLL_SECONDS)
        finally:
            consumer.pause(*tps)
        for tp in tps:
            highwater = consumer.highwater(tp)
            if highwater is not None and tp in fresh:
                self._end[tp] = highwater
        if len(fresh) < len(tps):
            log.warning("lag sampler: no fresh end offset for %s", sorted(set(tps) - fresh))
        return fresh

    async def _committed(
        self, groups: Mapping[str, Iterable[TopicPartition]]
    ) -> dict[str, dict[TopicPartition, int | None]]:
        """Committed offsets per group (None where the group has none); failed groups are left out."""
        names = list(groups)
        results = await asyncio.gather(
            *(self._committed_one(g, list(groups[g])) for g in names), return_exceptions=True
        )
        out: dict[str, dict[TopicPartition, int | None]] = {}
        for group, result in zip(names, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result
                self._coordinators.pop(group, None)
                log.warning("lag sampler: committed offsets of group %s unavailable: %r", group, result)
                continue
            out[group] = result
        return out

    async def _committed_one(self, group: str, tps: list[TopicPartition]) -> dict[TopicPartition, int | None]:
        assert self._admin is not None
        if not tps:
            return {}
        coordinator = self._coordinators.get(group)
        if coordinator is None:
            coordinator = self._coordinators[group] = await self._admin.find_coordinator(group)
        # Partitions must be named: Tansu cannot answer an OffsetFetch for "all partitions".
        offsets = await self._admin.list_consumer_group_offsets(group, group_coordinator_id=coordinator, partitions=tps)
        return {tp: (offsets[tp].offset if tp in offsets and offsets[tp].offset >= 0 else None) for tp in tps}

    async def _log_start(self, tps: set[TopicPartition]) -> dict[TopicPartition, int]:
        if not tps:
            return {}
        assert self._consumer is not None
        try:
            found: dict[TopicPartition, int] = await self._consumer.beginning_offsets(list(tps))
        except KafkaError as exc:
            log.warning("lag sampler: log start offsets unavailable, counting from 0: %r", exc)
            return {}
        return found
