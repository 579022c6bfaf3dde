"""Acknowledging a source record only after everything derived from it is acknowledged.

Each captured record may become several routed records, dead letters and held frames. The
record is acked (made committable) when all of their deliveries succeeded, and records of one
partition are acked strictly in offset order: a later record whose sends finished first
waits for the earlier ones, so a crash can never commit past a record whose sends were lost.
A failed delivery acks nothing further on that partition and reports the failure.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any


class PendingRecord:
    __slots__ = ("ack", "failed", "open", "sealed")

    def __init__(self, ack: Callable[[], Any]) -> None:
        self.ack = ack
        self.open = 0
        self.sealed = False
        self.failed = False


class RecordAcks:
    """Per source partition, the records whose derived sends are still open, in offset order."""

    def __init__(self, on_failure: Callable[[BaseException], None]) -> None:
        self._on_failure = on_failure
        self._queues: dict[Any, deque[PendingRecord]] = {}

    def begin(self, tp: Any, ack: Callable[[], Any]) -> PendingRecord:
        pending = PendingRecord(ack)
        queue = self._queues.get(tp)
        if queue is None:
            queue = self._queues[tp] = deque()
        queue.append(pending)
        return pending

    def track(self, tp: Any, pending: PendingRecord, future: asyncio.Future[Any]) -> None:
        pending.open += 1
        future.add_done_callback(lambda f: self._done(tp, pending, f))

    def seal(self, tp: Any, pending: PendingRecord) -> None:
        """Every send of the record has been queued; it may be acked once they are delivered."""
        pending.sealed = True
        self._advance(tp)

    def open_records(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def _done(self, tp: Any, pending: PendingRecord, future: asyncio.Future[Any]) -> None:
        pending.open -= 1
        exc = future.exception() if not future.cancelled() else asyncio.CancelledError("delivery cancelled")
        if exc is not None:
            if not pending.failed:
                pending.failed = True
                self._on_failure(exc)
            return
        self._advance(tp)

    def _advance(self, tp: Any) -> None:
        queue = self._queues.get(tp)
        while queue:
            head = queue[0]
            if not head.sealed or head.open or head.failed:
                return
            queue.popleft()
            head.ack()
