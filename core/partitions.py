"""The partition a keyed record goes to, chosen by us so it can be known before the send.

It is the partition the producer's default partitioner would pick (murmur2 of the key over
all partitions, as the Java client does), so records sent with an explicit partition land
where keyed sends always did. Cached per (topic, key): hashing a key in pure Python costs
more than enqueueing the record.
"""

from __future__ import annotations

import time

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

# Partition counts can grow; a cache older than this is rebuilt from fresh metadata.
REFRESH_SECONDS = 60.0
MAX_KEYS = 100_000


class PartitionCache:
    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self._partitioner = DefaultPartitioner()
        self._partitions: dict[str, list[int]] = {}
        self._cache: dict[tuple[str, bytes], int] = {}
        self._built_at = time.monotonic()

    async def partition(self, topic: str, key: bytes) -> int:
        cached = self._cache.get((topic, key))
        if cached is not None:
            return cached
        if time.monotonic() - self._built_at > REFRESH_SECONDS or len(self._cache) >= MAX_KEYS:
            self._cache.clear()
            self._partitions.clear()
            self._built_at = time.monotonic()
        partitions = self._partitions.get(topic)
        if partitions is None:
            partitions = self._partitions[topic] = sorted(await self._producer.partitions_for(topic))
        partition: int = self._partitioner(key, partitions, partitions)
        self._cache[(topic, key)] = partition
        return partition
