"""A batch's delivery reports: a broker that never answers costs a bounded wait, never a hang."""

from __future__ import annotations

import asyncio

from aiokafka.errors import KafkaTimeoutError, NotLeaderForPartitionError

from bridge.service import _deliveries, _InFlight


def flight(future: asyncio.Future[object], stream_id: str) -> _InFlight:
    return _InFlight(stream_ids=[stream_id], future=future, reason=None)  # type: ignore[arg-type]


async def test_open_deliveries_time_out_and_reported_ones_keep_their_outcome() -> None:
    loop = asyncio.get_running_loop()
    acked: asyncio.Future[object] = loop.create_future()
    acked.set_result("metadata")
    refused: asyncio.Future[object] = loop.create_future()
    refused.set_exception(NotLeaderForPartitionError())
    silent: asyncio.Future[object] = loop.create_future()

    started = loop.time()
    results = await _deliveries([flight(acked, "1-0"), flight(refused, "2-0"), flight(silent, "3-0")], 0.2)

    assert loop.time() - started < 5
    assert results[0] == "metadata"
    assert isinstance(results[1], NotLeaderForPartitionError)
    assert isinstance(results[2], KafkaTimeoutError)
    # A report arriving after the wait is ignored by aiokafka (the future is done).
    assert silent.cancelled()


async def test_a_batch_whose_reports_all_arrive_does_not_wait_for_the_timeout() -> None:
    loop = asyncio.get_running_loop()
    later: asyncio.Future[object] = loop.create_future()
    loop.call_later(0.05, later.set_result, "ok")

    started = loop.time()
    assert await _deliveries([flight(later, "1-0")], 30) == ["ok"]
    assert loop.time() - started < 5
    assert await _deliveries([], 30) == []
