"""Where a read from a partition's start begins: at offset 0, never at ListOffsets(earliest).

Tansu (the embedded broker of the dev stack and the tests) answers ListOffsets(earliest) with
the batch it stored first, not the one with the lowest offset. Two producers appending to one
partition at once are given their offsets in one order and may be stored in the other; the
answer then lies past the first batch, and a consumer positioned there never sees that batch
(a fault run missed 18 results so). A fetch from offset 0 returns every batch. On Kafka, whose
partitions may have lost their start to retention, a fetch at 0 is answered OffsetOutOfRange,
and a consumer built with auto_offset_reset="earliest" then moves to the real start, which
Kafka answers right.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

log = logging.getLogger(__name__)

FIRST_OFFSET = 0
ASSIGNMENT_POLL_SECONDS = 0.05


def seek_to_first(consumer: AIOKafkaConsumer, tps: Iterable[TopicPartition]) -> None:
    """Position ``tps``, assigned to ``consumer``, at their first record."""
    for tp in tps:
        consumer.seek(tp, FIRST_OFFSET)


async def start_uncommitted_at_first(consumer: AIOKafkaConsumer, assigned: Iterable[TopicPartition]) -> None:
    """For a group consumer's ``on_partitions_assigned``: the assigned partitions its group never
    committed start at their first record, where the consumer would otherwise ask ListOffsets.
    Partitions with a commit resume from it.

    When the committed offsets cannot be read, the partitions are left to the consumer's own
    reset: a wrong start on Tansu is less harm than a rebalance that fails."""
    tps = sorted(assigned)
    try:
        fresh = [tp for tp in tps if await consumer.committed(tp) is None]
    except KafkaError as exc:
        log.warning("could not read the committed offsets of %s (%r); they start where the broker says", tps, exc)
        return
    if fresh:
        log.info("partitions never committed, read from their first record: %s", fresh)
        seek_to_first(consumer, fresh)


class StartAtFirst(ConsumerRebalanceListener):  # type: ignore[misc]
    """The listener of a group consumer that needs no other: see start_uncommitted_at_first."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: Any) -> None:
        return None

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await start_uncommitted_at_first(self._consumer, assigned)


async def subscribe_from_first(consumer: AIOKafkaConsumer, topic: str, within: float = 30.0) -> None:
    """Subscribe ``consumer`` (built without a group) to every partition of ``topic``, each from
    its first record. Without a group no listener is told of the assignment, so it is waited for.

    Raises TimeoutError when no partition is assigned ``within`` seconds (the topic is gone)."""
    # Subscribing refreshes the metadata at once, and without a group every partition is ours.
    consumer.subscribe([topic])
    deadline = time.monotonic() + within
    while not consumer.assignment():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no partition of {topic} assigned within {within:.0f} s")
        await asyncio.sleep(ASSIGNMENT_POLL_SECONDS)
    seek_to_first(consumer, consumer.assignment())
