"""How the router hands records to Kafka: queued, not awaited one by one.

``send`` returns once the record is queued and gives back its delivery future; the caller
decides when the source record may be acked (agents.record_acks). The partition is chosen
here, the one a keyed send picks, so per-camera order on each processor topic holds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer

from core.partitions import PartitionCache
from frame_buffer_sdk.kafka import start_reliable_producer
from frame_buffer_sdk.kafka_security import PLAINTEXT, KafkaSecurity

Headers = Sequence[tuple[str, bytes]]
RETRIES = 5
RETRY_BASE_SECONDS = 0.1


@dataclass(frozen=True, slots=True)
class _Record:
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]] | None


class RecordSender(Protocol):
    async def start(self) -> None: ...

    async def send(self, topic: str, key: bytes, value: bytes, headers: Headers | None = None) -> asyncio.Future[Any]:
        """Queue one record; the future resolves when Kafka acknowledged it (or fails)."""
        ...

    async def stop(self) -> None: ...


class KafkaSender:
    """The router's own producer: acks=all, a short linger so sends of one poll share requests."""

    def __init__(
        self, bootstrap_servers: str, client_id: str, linger_ms: int = 5, *, security: KafkaSecurity = PLAINTEXT
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._client_id = client_id
        self._linger_ms = linger_ms
        self._security = security
        self._producer: AIOKafkaProducer | None = None
        self._partitions: PartitionCache | None = None
        self._lock = asyncio.Lock()
        self._retrying: set[asyncio.Future[None]] = set()

    async def start(self) -> None:
        async with self._lock:
            if self._producer is None:
                self._producer = await start_reliable_producer(
                    self._bootstrap, self._client_id, self._linger_ms, security=self._security
                )
                self._partitions = PartitionCache(self._producer)

    async def send(self, topic: str, key: bytes, value: bytes, headers: Headers | None = None) -> asyncio.Future[Any]:
        """Queue the record; the returned future settles once Kafka took it or refused it for good.

        A delivery that fails with an error Kafka calls retriable (a leader moving, a request
        timing out) is sent again, up to ``RETRIES`` times with a growing pause, before its
        future fails: one broker hiccup must not stop the worker. A retried record may land
        after records sent later to the same partition.
        """
        outcome: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self._attempt(outcome, _Record(topic, key, value, list(headers) if headers else None), RETRIES)
        return outcome

    async def _attempt(self, outcome: asyncio.Future[Any], record: _Record, retries_left: int) -> None:
        if self._producer is None:
            await self.start()
        assert self._producer is not None and self._partitions is not None
        partition = await self._partitions.partition(record.topic, record.key)
        delivery: asyncio.Future[Any] = await self._producer.send(
            record.topic, value=record.value, key=record.key, headers=record.headers, partition=partition
        )
        delivery.add_done_callback(lambda done: self._settle(outcome, done, record, retries_left))

    def _settle(
        self, outcome: asyncio.Future[Any], delivery: asyncio.Future[Any], record: _Record, retries_left: int
    ) -> None:
        if outcome.done():
            return
        if delivery.cancelled():
            outcome.cancel()
            return
        error = delivery.exception()
        if error is None:
            outcome.set_result(delivery.result())
        elif retries_left > 0 and getattr(error, "retriable", False):
            retry = asyncio.ensure_future(self._retry(outcome, record, retries_left - 1))
            self._retrying.add(retry)
            retry.add_done_callback(self._retrying.discard)
        else:
            outcome.set_exception(error)

    async def _retry(self, outcome: asyncio.Future[Any], record: _Record, retries_left: int) -> None:
        await asyncio.sleep(RETRY_BASE_SECONDS * 2 ** (RETRIES - 1 - retries_left))
        try:
            await self._attempt(outcome, record, retries_left)
        except Exception as exc:  # the send itself refused: that is the record's outcome
            if not outcome.done():
                outcome.set_exception(exc)

    async def stop(self) -> None:
        for retry in list(self._retrying):
            retry.cancel()  # its record's future stays open: that record is never acked
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()  # flushes what is queued first
