"""The worker's drain hands records to its streams directly when nothing can block, and the
Faust code it was copied from is the code installed."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
from collections.abc import AsyncIterator, Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from faust.transport.consumer import Consumer
from faust.types import TP
from mode import Service

from app.fast_drain import UPSTREAM_SOURCE_SHA256, FastDrainMixin, can_deliver_now
from app.main import WorkerApp, create_worker_app
from tests.unit.test_faust_conventions import unit_settings


def test_the_copied_drain_is_the_installed_faust_one() -> None:
    assert version("faust-streaming") == "0.15.3"
    source = inspect.getsource(Consumer._drain_messages)
    assert hashlib.sha256(source.encode()).hexdigest() == UPSTREAM_SOURCE_SHA256, (
        "faust's Consumer._drain_messages changed: review app/fast_drain.py against it"
    )


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[WorkerApp]:
    built = create_worker_app(unit_settings(tmp_path))
    built.app.flow_control.resume()  # as after the first assignment; a new app starts suspended
    yield built


def captured_tp(worker: WorkerApp) -> TP:
    return TP(worker.orch.topics.captured.get_topic_name(), 0)


def subscribe(worker: WorkerApp, tp: TP) -> Any:
    """The routing agent's channel, indexed for ``tp`` as the conductor does on assignment."""
    channel = worker.orch.topics.captured
    worker.app.topics._tp_index[tp].add(channel)
    return channel


def test_the_worker_consumer_uses_the_fast_drain(worker: WorkerApp) -> None:
    consumer = worker.app.consumer
    assert isinstance(consumer, FastDrainMixin)
    assert type(consumer)._drain_messages is FastDrainMixin._drain_messages


def test_a_record_can_be_handed_over_directly_only_when_nothing_would_wait(worker: WorkerApp) -> None:
    consumer = worker.app.consumer
    tp = captured_tp(worker)
    channel = subscribe(worker, tp)
    assert can_deliver_now(consumer, tp)

    worker.app.flow_control.suspend()  # a rebalance
    assert not can_deliver_now(consumer, tp)
    worker.app.flow_control.resume()

    consumer.suspend_flow.set()
    assert not can_deliver_now(consumer, tp)
    consumer.suspend_flow.clear()

    buffer = worker.app.producer.buffer
    buffer.max_messages = -1  # any size is past it
    assert not can_deliver_now(consumer, tp)
    buffer.max_messages = 100

    queue = channel.queue
    for i in range(queue.maxsize):
        queue.force_put_nowait(i)
    assert not can_deliver_now(consumer, tp)
    queue.clear()
    assert can_deliver_now(consumer, tp)


class _Message:
    def __init__(self, tp: TP, offset: int) -> None:
        self.tp, self.topic, self.partition, self.offset = tp, tp.topic, tp.partition, offset
        self.key = self.value = b""


async def drain(worker: WorkerApp, messages: list[_Message], queue_full: bool) -> tuple[list[int], int]:
    """Run the drain over ``messages`` once; what the callback got, and how often wait_first ran."""
    consumer: Any = worker.app.consumer
    tp = captured_tp(worker)
    channel = subscribe(worker, tp)
    if queue_full:
        for i in range(channel.queue.maxsize):
            channel.queue.force_put_nowait(i)
    fetcher = Service()
    delivered: list[int] = []
    waits = 0

    async def callback(message: _Message) -> None:
        delivered.append(message.offset)

    async def getmany(timeout: float) -> AsyncIterator[tuple[TP, _Message]]:  # noqa: ASYNC109 - Faust's signature
        for message in messages:
            yield message.tp, message
        fetcher._stopped.set()  # one pass only

    async def wait_first(*coros: Any) -> None:
        nonlocal waits
        waits += 1
        await coros[0]  # the hand-over; suspend_flow never fires here
        coros[1].close()

    consumer.callback = callback
    consumer.getmany = getmany
    consumer.wait_first = wait_first
    await asyncio.wait_for(consumer._drain_messages(fetcher), 5)
    return delivered, waits


async def test_with_room_every_record_is_handed_over_without_wait_first(worker: WorkerApp) -> None:
    tp = captured_tp(worker)
    delivered, waits = await drain(worker, [_Message(tp, n) for n in range(5)], queue_full=False)
    assert delivered == [0, 1, 2, 3, 4]
    assert waits == 0


async def test_a_full_queue_takes_the_interruptible_upstream_path(worker: WorkerApp) -> None:
    tp = captured_tp(worker)
    delivered, waits = await drain(worker, [_Message(tp, n) for n in range(3)], queue_full=True)
    assert delivered == [0, 1, 2]
    assert waits == 3
