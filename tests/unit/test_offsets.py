"""Reads from a partition's start begin at offset 0 (frame_buffer_sdk.offsets), for a group only
where the group never committed."""

from __future__ import annotations

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError, NotCoordinatorForGroupError

from frame_buffer_sdk.offsets import seek_to_first, start_uncommitted_at_first

TP0, TP1, TP2 = (TopicPartition("t", p) for p in range(3))


class _Consumer:
    """What the helpers call of an AIOKafkaConsumer: committed offsets given, seeks recorded."""

    def __init__(self, committed: dict[TopicPartition, int | None], error: KafkaError | None = None) -> None:
        self._committed = committed
        self._error = error
        self.seeks: list[tuple[TopicPartition, int]] = []

    async def committed(self, tp: TopicPartition) -> int | None:
        if self._error is not None:
            raise self._error
        return self._committed[tp]

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))


def test_seek_to_first_puts_every_partition_at_offset_0() -> None:
    consumer = _Consumer({})
    seek_to_first(consumer, [TP1, TP0])  # type: ignore[arg-type]
    assert consumer.seeks == [(TP1, 0), (TP0, 0)]


async def test_only_the_partitions_never_committed_start_at_the_first_record() -> None:
    consumer = _Consumer({TP0: None, TP1: 17, TP2: None})
    await start_uncommitted_at_first(consumer, {TP2, TP1, TP0})  # type: ignore[arg-type]
    # TP1 resumes from its commit: a seek would override it and replay the partition.
    assert consumer.seeks == [(TP0, 0), (TP2, 0)]


async def test_unreadable_commits_leave_the_partitions_to_the_consumers_reset() -> None:
    consumer = _Consumer({}, error=NotCoordinatorForGroupError())
    await start_uncommitted_at_first(consumer, {TP0})  # type: ignore[arg-type]
    assert consumer.seeks == []
