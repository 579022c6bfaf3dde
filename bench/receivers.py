"""The processors' side of every benchmarked system: consume frames, note when each arrived.

Receivers do no work on a frame beyond reading its id and capture time, so what is
measured is the system in front of them, not a model.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import cast

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer
from redis.exceptions import ResponseError

from bench.frames import StreamReply, decode_stream_fields, parse_json_frame, tag_and_captured
from frame_buffer_sdk.kafka_security import PLAINTEXT, KafkaSecurity

log = logging.getLogger(__name__)


@dataclass
class TagStats:
    latencies: list[float] = field(default_factory=list)
    captured: list[float] = field(default_factory=list)
    first: float = 0.0
    last: float = 0.0


class Recorder:
    """Receipt times and latencies per tag; one event loop, so no locking."""

    def __init__(self) -> None:
        self._tags: dict[str, TagStats] = {}
        self.errors: list[str] = []

    def watch(self, task: asyncio.Task[None], name: str) -> None:
        """A receiver that dies makes every later wait fail loudly instead of timing out silently."""

        def done(t: asyncio.Task[None]) -> None:
            if not t.cancelled() and t.exception() is not None:
                self.errors.append(f"{name}: {t.exception()!r}")

        task.add_done_callback(done)

    def record(self, tag: str, captured_at: float, received_at: float) -> None:
        stats = self._tags.get(tag)
        if stats is None:
            stats = self._tags[tag] = TagStats(first=received_at)
        stats.latencies.append(received_at - captured_at)
        stats.captured.append(captured_at)
        stats.last = received_at

    def count(self, tag: str) -> int:
        stats = self._tags.get(tag)
        return len(stats.latencies) if stats else 0

    def stats(self, tag: str) -> TagStats:
        return self._tags.get(tag) or TagStats()

    async def wait_for(self, tag: str, expected: int, limit: float, idle_limit: float | None = None) -> bool:
        """True once ``expected`` frames of ``tag`` arrived; False after ``limit`` s or ``idle_limit`` s idle."""
        deadline = time.monotonic() + limit
        last_count, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            if self.errors:
                raise RuntimeError(f"receiver failed: {self.errors[0]}")
            count = self.count(tag)
            if count >= expected:
                return True
            now = time.monotonic()
            if count != last_count:
                last_count, last_change = count, now
            elif idle_limit is not None and now - last_change > idle_limit:
                return False
            await asyncio.sleep(0.01)
        return False


class KafkaReceivers:
    """One consumer per processor topic, in the processor's own consumer group, committing as it goes."""

    def __init__(
        self,
        bootstrap_servers: str,
        topics: Mapping[str, str],
        recorder: Recorder,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:
        """``topics`` maps consumer group -> topic."""
        self.bootstrap_servers = bootstrap_servers
        self.security = security
        self.topics = dict(topics)
        self.recorder = recorder
        self._consumers: list[AIOKafkaConsumer] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for group, topic in self.topics.items():
            consumer = AIOKafkaConsumer(
                topic,
                bootstrap_servers=self.bootstrap_servers,
                group_id=group,
                client_id=f"bench-{group}",
                auto_offset_reset="earliest",
                enable_auto_commit=True,
                auto_commit_interval_ms=500,
                # Tansu makes a first join wait a whole rebalance timeout: keep it short.
                rebalance_timeout_ms=2000,
                session_timeout_ms=6000,
                heartbeat_interval_ms=1000,
                max_partition_fetch_bytes=4 << 20,
                fetch_max_wait_ms=20,
                **self.security.client_kwargs(),
            )
            self._consumers.append(consumer)
        await asyncio.gather(*(c.start() for c in self._consumers))
        self._tasks = [asyncio.create_task(self._run(c)) for c in self._consumers]
        for task, group in zip(self._tasks, self.topics, strict=True):
            self.recorder.watch(task, group)

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        record = self.recorder.record
        while True:
            batches = await consumer.getmany(timeout_ms=100, max_records=5000)
            now = time.time()
            for messages in batches.values():
                for message in messages:
                    if message.value is None:
                        continue
                    tag, captured_at = parse_json_frame(message.value)
                    record(tag, captured_at, now)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for consumer in self._consumers:
            with contextlib.suppress(Exception):
                await consumer.stop()
        self._tasks, self._consumers = [], []


class StreamReceivers:
    """One XREADGROUP loop per processor stream, acknowledging what it read."""

    def __init__(self, redis_url: str, streams: list[str], group: str, recorder: Recorder) -> None:
        self.redis_url = redis_url
        self.streams = streams
        self.group = group
        self.recorder = recorder
        self._clients: list[aioredis.Redis] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for stream in self.streams:
            client = aioredis.Redis.from_url(self.redis_url)
            self._clients.append(client)
            with contextlib.suppress(ResponseError):  # BUSYGROUP: already there
                await client.xgroup_create(stream, self.group, id="0", mkstream=True)
            task = asyncio.create_task(self._run(client, stream))
            self.recorder.watch(task, stream)
            self._tasks.append(task)

    async def _run(self, client: aioredis.Redis, stream: str) -> None:
        record = self.recorder.record
        while True:
            reply = cast(
                StreamReply, await client.xreadgroup(self.group, "bench-receiver", {stream: ">"}, count=5000, block=100)
            )
            if not reply:
                continue
            now = time.time()
            ids = []
            for _name, entries in reply:
                for entry_id, fields in entries:
                    ids.append(entry_id)
                    tag, captured_at = tag_and_captured(decode_stream_fields(fields))
                    record(tag, captured_at, now)
            if ids:
                await client.xack(stream, self.group, *ids)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for client in self._clients:
            with contextlib.suppress(Exception):
                await client.aclose()
        self._tasks, self._clients = [], []
