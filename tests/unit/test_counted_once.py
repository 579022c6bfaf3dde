"""The counting agents through test_context(): a record some snapshot already counts is not
counted again, and a record is acked only once a delivered snapshot counts it."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import faust

from agents.count_results import register_count_results
from agents.folds import newer_entry
from app.main import WorkerApp
from core.ledger import Ledger, Snapshot, SourceCounts
from tests.unit.router_fakes import Sent, frame, view, worker

__all__ = ["worker"]  # the fixture, imported for pytest


async def test_results_a_snapshot_counts_are_not_counted_again() -> None:
    app = faust.App("unit-results", store="memory://", web_enabled=False)
    ledger = Ledger("new-owner")
    topic = app.topic("results")
    # The previous owner's delivered snapshot counts offsets 0 and 1 of the partition.
    ledger.load = lambda source: [{"source": f"{source[0]}/0", "covered": 1, "at": 1.0, "processed": 2}]
    orch = SimpleNamespace(app=app, topics=SimpleNamespace(results=topic), stats=ledger)
    agent = register_count_results(orch)  # type: ignore[arg-type]
    async with agent.test_context() as test:
        events = [
            await test.put(json.dumps({"processor_id": "det"}).encode(), partition=0) for _ in range(4)
        ]  # offsets 0..3: the commit was at 0, so 1 is a replay
    assert ledger.totals().processed == 2 + 2
    assert ledger.totals().processed_by_processor == {"det": 2}
    assert [e.message.acked for e in events] == [True, True, False, False]  # 2 and 3 wait for a snapshot


async def test_a_routed_record_is_acked_once_its_count_snapshot_is_delivered(
    worker: tuple[WorkerApp, Sent],
) -> None:
    built, _ = worker
    ledger = built.orch.stats
    taken: list[tuple[SourceCounts, Snapshot]] = []
    ledger.persist = lambda state, snap: taken.append((state, snap))
    built.router.update_view([view("det-a", {"object_detection"})])
    async with built.route_frames.test_context() as agent:
        event = await agent.put(frame("a", ["object_detection"]), key=b"cam-1", partition=0)
        for _ in range(3):
            await asyncio.sleep(0)
        assert not event.message.acked  # its send is acknowledged, but no snapshot counts it yet
        ledger.flush()
        assert [(snap["covered"], snap["captured"], snap["routed"]) for _, snap in taken] == [(0, 1, 1)]
        assert not event.message.acked
        state, snap = taken[0]
        ledger.delivered(state, snap["covered"])
        assert event.message.acked


def test_a_replayed_stats_entry_never_folds_over_a_newer_one() -> None:
    stored: dict[str, Any] = {"boot_id": "b", "seq": 7}
    assert not newer_entry(stored, {"boot_id": "b", "seq": 6})
    assert not newer_entry(stored, {"boot_id": "b", "seq": 7})
    assert newer_entry(stored, {"boot_id": "b", "seq": 8})
    assert newer_entry(None, {"boot_id": "b", "seq": 1})
    assert newer_entry(stored, {"boot_id": "b"})  # an older version's entry: as before
