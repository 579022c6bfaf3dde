"""The routing agents' latest_waiting writes through test_context(): coalesced under a burst of
held frames, and a new owner after a rebalance (or a crash) still sheds the older frames and
keeps the newest."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from agents.latest_waiting import Held, LatestWaiting, parse_held
from app.main import WorkerApp, create_worker_app
from core.levels import Level
from tests.unit.router_fakes import Sent, frame, ready, view, worker

__all__ = ["worker"]  # the fixture, imported for pytest
KEY = "cam-1|object_detection"
BURST = 50


class CountingTable:
    """The waiting table, counting the writes made through the stream and to the changelog."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self.sets: list[tuple[str, Any]] = []
        self.changelog: list[tuple[int, str, Any]] = []

    def __setitem__(self, key: str, value: Any) -> None:
        self.sets.append((key, value))
        self.table[key] = value

    def __getitem__(self, key: str) -> Any:
        return self.table[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.table.get(key, default)

    def items(self) -> Iterator[tuple[str, Any]]:
        return iter(self.table.items())

    def send_changelog(self, partition: int, key: str, value: Any) -> None:
        self.changelog.append((partition, key, value))


def counting(built: WorkerApp) -> CountingTable:
    table = CountingTable(built.orch.tables.waiting)
    built.orch.tables.waiting = table
    return table


async def hold_burst(built: WorkerApp, sent: Sent) -> list[dict[str, Any]]:
    built.router.update_view([view("det-a", {"object_detection"}, lag=99, level=Level.CRITICAL)])
    async with built.route_frames.test_context() as agent:
        for i in range(BURST):
            await agent.put(frame(f"f{i}", ["object_detection"]), key=b"cam-1")
    return sent.records[f"{built.settings.app_id}-waiting"]


async def drain(built: WorkerApp, held: list[dict[str, Any]]) -> None:
    built.router.update_view([view("det-a", {"object_detection"}, lag=0)])
    async with built.drain_waiting.test_context() as agent:
        for record in held:
            await agent.put(json.dumps(record["value"]).encode(), key=record["key"])


def new_owner(built: WorkerApp, table: dict[str, Any]) -> tuple[WorkerApp, Sent]:
    """Another worker taking the partition over, its waiting table recovered as ``table``."""
    sent = Sent()
    other = create_worker_app(built.settings, sender=sent)
    other.app.finalize()
    other.app.flow_control.resume()
    other.orch.tables.waiting = table
    return other, sent


def outcome(built: WorkerApp, sent: Sent) -> tuple[list[str], list[str]]:
    shed = [d["frame_id"] for d in sent.values(built.settings.dead_letter_topic) if d["reason"] == "shed"]
    return shed, [r["frame_id"] for r in sent.values(ready(built.settings, "det-a"))]


async def test_a_burst_of_held_frames_writes_the_table_once_per_tick(worker: tuple[WorkerApp, Sent]) -> None:
    built, sent = worker
    built.routing.latest = LatestWaiting(tick_seconds=3600.0)  # the whole burst in one tick
    table = counting(built)
    held = await hold_burst(built, sent)
    assert len(held) == BURST
    assert [k for k, _ in table.sets] == [KEY], "one write for the tick, not one per held frame"
    assert built.routing.newest_held(0, KEY) == Held(f"f{BURST - 1}", (BURST - 1, 0))
    await drain(built, held)
    shed, sent_on = outcome(built, sent)
    assert sent_on == [f"f{BURST - 1}"] and shed == [f"f{i}" for i in range(BURST - 1)]
    assert len(table.sets) == 1


async def test_the_newest_of_a_tick_reaches_the_table_on_the_next_tick(worker: tuple[WorkerApp, Sent]) -> None:
    built, sent = worker
    built.routing.latest = LatestWaiting(tick_seconds=0.0)  # every call is a new tick
    table = counting(built)
    await hold_burst(built, sent)
    assert parse_held(table.table[KEY]) == Held(f"f{BURST - 1}", (BURST - 1, 0))


async def test_a_rebalance_hands_the_unwritten_newest_to_the_next_owner(worker: tuple[WorkerApp, Sent]) -> None:
    built, sent = worker
    built.routing.latest = LatestWaiting(tick_seconds=3600.0)
    table = counting(built)
    held = await hold_burst(built, sent)
    built.routing.forget([0])  # the partition is revoked before the tick's write was due
    assert [(p, k, parse_held(v)) for p, k, v in table.changelog] == [(0, KEY, Held(f"f{BURST - 1}", (BURST - 1, 0)))]
    recovered = dict(table.table.items())
    recovered.update({k: v for _, k, v in table.changelog})
    other, other_sent = new_owner(built, recovered)
    await drain(other, held)
    shed, sent_on = outcome(other, other_sent)
    assert sent_on == [f"f{BURST - 1}"] and shed == [f"f{i}" for i in range(BURST - 1)]


async def test_after_a_crash_the_newest_held_frame_is_never_shed(worker: tuple[WorkerApp, Sent]) -> None:
    """The next owner's table lacks the last tick's write (the worker crashed before it): it
    names f0 while f1..f49 were held since. The held frames newer than the table are each the
    newest known when read, so with room they are sent, not shed (the window that
    agents/latest_waiting.py documents); the newest is never shed."""
    built, sent = worker
    held = await hold_burst(built, sent)
    other, other_sent = new_owner(built, {KEY: Held("f0", (0, 0)).value()})
    # The old owner had handled the first half already: the replay starts after it.
    await drain(other, held[BURST // 2 :])
    shed, sent_on = outcome(other, other_sent)
    assert shed == [] and sent_on == [f"f{i}" for i in range(BURST // 2, BURST)]
    assert other.routing.newest_held(0, KEY) == Held(f"f{BURST - 1}", (BURST - 1, 0))


async def test_a_held_frame_the_table_never_heard_of_is_kept(worker: tuple[WorkerApp, Sent]) -> None:
    built, sent = worker
    held = await hold_burst(built, sent)
    other, other_sent = new_owner(built, {})
    await drain(other, held[-1:])
    assert outcome(other, other_sent) == ([], [f"f{BURST - 1}"])


async def test_a_revoke_queues_the_unwritten_newest_on_the_real_changelog(worker: tuple[WorkerApp, Sent]) -> None:
    built, sent = worker
    built.routing.latest = LatestWaiting(tick_seconds=3600.0)
    await hold_burst(built, sent)
    buffer = built.app.producer.buffer
    before = buffer.size
    built.routing.forget([0])
    assert buffer.size == before + 1
    queued = buffer.pending.get_nowait()
    assert queued.message.partition == 0
    assert queued.message.channel.get_topic_name() == f"{built.settings.app_id}-latest_waiting-changelog"
