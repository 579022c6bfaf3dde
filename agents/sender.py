"""How the router hands records to Kafka: queued, not awaited one by one.

``send`` returns once the record is queued and gives back its delivery future; the caller
decides when the source record may be acked (agents.record_acks). The partition is chosen
here, the one a keyed send picks, so per-camera order on each processor topic holds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer

from app.kafka import start_reliable_producer
from app.kafka_security import PLAINTEXT, KafkaSecurity
from app.partitions import PartitionCache

Headers = Sequence[tuple[str, bytes]]


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

    async def start(self) -> None:
        async with self._lock:
            if self._producer is None:
                self._producer = await start_reliable_producer(
                    self._bootstrap, self._client_id, self._linger_ms, security=self._security
                )
                self._partitions = PartitionCache(self._producer)

    async def send(self, topic: str, key: bytes, value: bytes, headers: Headers | None = None) -> asyncio.Future[Any]:
        if self._producer is None:
            await self.start()
        assert self._producer is not None and self._partitions is not None
        partition = await self._partitions.partition(topic, key)
        future: asyncio.Future[Any] = await self._producer.send(
            topic, value=value, key=key, headers=list(headers) if headers else None, partition=partition
        )
        return future

    async def stop(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()  # flushes what is queued first
