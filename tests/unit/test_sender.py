"""The router's producer wrapper: a retriable delivery failure is sent again, others fail the record."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import MessageSizeTooLargeError, NotLeaderForPartitionError

import agents.sender as sender_module
from agents.sender import RETRIES, KafkaSender
from core.partitions import PartitionCache


class FakeProducer:
    """Fails the first ``failures`` deliveries with ``error``, then acknowledges."""

    def __init__(self, error: BaseException, failures: int) -> None:
        self.error = error
        self.failures = failures
        self.sent: list[tuple[str, bytes, int]] = []

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2, 3}

    async def send(self, topic: str, value: bytes, key: bytes, headers: Any, partition: int) -> asyncio.Future[Any]:
        self.sent.append((topic, value, partition))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if len(self.sent) <= self.failures:
            future.set_exception(self.error)
        else:
            future.set_result(("metadata", partition))
        return future


def sender_with(producer: FakeProducer) -> KafkaSender:
    sender = KafkaSender("127.0.0.1:1", "test")
    sender._producer = producer  # type: ignore[assignment]
    sender._partitions = PartitionCache(producer)  # type: ignore[arg-type]
    return sender


@pytest.fixture(autouse=True)
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sender_module, "RETRY_BASE_SECONDS", 0.0)


async def test_a_retriable_failure_is_sent_again_to_the_same_partition() -> None:
    producer = FakeProducer(NotLeaderForPartitionError(), failures=2)
    outcome = await sender_with(producer).send("t", b"cam-1", b"v")
    assert (await asyncio.wait_for(outcome, 5))[0] == "metadata"
    assert len(producer.sent) == 3 and len({p for _, _, p in producer.sent}) == 1


async def test_a_failure_kafka_will_never_accept_fails_the_record_at_once() -> None:
    producer = FakeProducer(MessageSizeTooLargeError(), failures=1)
    outcome = await sender_with(producer).send("t", b"cam-1", b"v")
    with pytest.raises(MessageSizeTooLargeError):
        await asyncio.wait_for(outcome, 5)
    assert len(producer.sent) == 1


async def test_retries_end_and_the_last_error_is_the_records() -> None:
    producer = FakeProducer(NotLeaderForPartitionError(), failures=100)
    outcome = await sender_with(producer).send("t", b"cam-1", b"v")
    with pytest.raises(NotLeaderForPartitionError):
        await asyncio.wait_for(outcome, 5)
    assert len(producer.sent) == RETRIES + 1
