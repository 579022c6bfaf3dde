"""The routing agents through Faust's test_context(): no broker, the real agent code.

Sends go to a fake producer (tests/unit/router_fakes.py) that records them by topic; the
tables are Faust's own in-memory tables.
"""

from __future__ import annotations

import asyncio
import json

from agents.latest_waiting import Held, parse_held
from app.main import WorkerApp
from core.levels import Level
from tests.unit.router_fakes import Sent, frame, ready, view, worker

__all__ = ["worker"]  # the fixture, imported for pytest


async def test_fans_out_per_capability_and_dedupes(worker: tuple[WorkerApp, Sent]) -> None:
    built, sent = worker
    built.router.update_view([view("det-a", {"object_detection"}), view("face", {"face_recognition"})])
    async with built.route_frames.test_context() as agent:
        await agent.put(frame("f1", ["object_detection", "face_recognition"]), key=b"cam-1")
        await agent.put(frame("f1", ["object_detection", "face_recognition"]), key=b"cam-1")  # redelivery
    s = built.settings
    det = sent.values(ready(s, "det-a"))
    face = sent.values(ready(s, "face"))
    assert [r["frame_id"] for r in det] == ["f1"] and [r["frame_id"] for r in face] == ["f1"]
    assert det[0]["processor_id"] == "det-a" and det[0]["capability"] == "object_detection"
    assert "routed_at" in det[0]
    # The routing span's context travels on, in the same trace as the capture entry.
    headers = dict(sent.records[ready(s, "det-a")][0]["headers"])
    assert headers["traceparent"].decode().split("-")[1] == "0af7651916cd43dd8448eb211c80319c"
    counters = built.orch.stats.totals()
    # The redelivered frame was captured once; both of its pairs count as deduplicated.
    assert (counters.captured, counters.routed, counters.deduplicated) == (1, 2, 2)


async def test_unroutable_and_invalid_frames_are_dead_lettered_with_reason(worker: tuple[WorkerApp, Sent]) -> None:
    built, sent = worker
    built.router.update_view([view("det-a", {"object_detection"}, healthy=False)])
    async with built.route_frames.test_context() as agent:
        await agent.put(frame("f2", ["object_detection"]), key=b"cam-1")
        await agent.put(b'{"frame_id": "broken"}', key=b"cam-1")
    letters = sent.values(built.settings.dead_letter_topic)
    assert [(d["reason"], d.get("frame_id")) for d in letters] == [
        ("no_capable_processor", "f2"),
        ("invalid_frame", None),
    ]
    assert "camera_id" in letters[1]["detail"] or "captured_at" in letters[1]["detail"]
    assert built.orch.stats.totals().dead_lettered == {"no_capable_processor": 1, "invalid_frame": 1}


async def test_stateful_affinity_is_written_to_the_changelog_table(worker: tuple[WorkerApp, Sent]) -> None:
    built, sent = worker
    built.router.update_view([view("tracker", {"tracking"}, stateful=True)])
    async with built.route_frames.test_context() as agent:
        await agent.put(frame("f3", ["tracking"], camera="cam-9"), key=b"cam-9")
        await agent.put(frame("f4", ["tracking"], camera="cam-9"), key=b"cam-9")
    assert built.orch.tables.affinity["cam-9"] == {"tracking": "tracker"}
    assert [r["frame_id"] for r in sent.values(ready(built.settings, "tracker"))] == ["f3", "f4"]


async def test_sheddable_frames_wait_in_kafka_when_all_critical(worker: tuple[WorkerApp, Sent]) -> None:
    built, sent = worker
    built.router.update_view([view("det-a", {"object_detection"}, lag=99, level=Level.CRITICAL)])
    async with built.route_frames.test_context() as agent:
        await agent.put(frame("old", ["object_detection"]), key=b"cam-1")
        await agent.put(frame("new", ["object_detection"]), key=b"cam-1")
    held = sent.values(f"{built.settings.app_id}-waiting")
    assert [h["frame"]["frame_id"] for h in held] == ["old", "new"]
    # The newest is known at once; the table got the first hold, the second waits for the next tick.
    assert built.routing.newest_held(0, "cam-1|object_detection") == Held("new", (1, 0))
    assert parse_held(built.orch.tables.waiting["cam-1|object_detection"]) == Held("old", (0, 0))
    assert sent.values(ready(built.settings, "det-a")) == []


async def test_drain_sheds_superseded_frames_and_sends_the_latest(worker: tuple[WorkerApp, Sent]) -> None:
    built, sent = worker
    built.router.update_view([view("det-a", {"object_detection"}, lag=99, level=Level.CRITICAL)])
    async with built.route_frames.test_context() as agent:
        await agent.put(frame("old", ["object_detection"]), key=b"cam-1")
        await agent.put(frame("new", ["object_detection"]), key=b"cam-1")
    held = sent.records[f"{built.settings.app_id}-waiting"]
    built.router.update_view([view("det-a", {"object_detection"}, lag=0)])
    async with built.drain_waiting.test_context() as drain:
        for record in held:
            await drain.put(json.dumps(record["value"]).encode(), key=record["key"])
    letters = sent.values(built.settings.dead_letter_topic)
    assert [(d["reason"], d["frame_id"]) for d in letters] == [("shed", "old")]
    assert [r["frame_id"] for r in sent.values(ready(built.settings, "det-a"))] == ["new"]
    counters = built.orch.stats.totals()
    assert counters.shed == 1 and counters.shed_by_camera == {"cam-1": 1} and counters.dead_lettered == {}


async def test_drain_hands_on_held_frames_without_waiting_for_each_acknowledgement(
    worker: tuple[WorkerApp, Sent],
) -> None:
    """Under overload nearly every frame is held and then shed: a drain that awaited each dead
    letter's acknowledgement sheds slower than frames are held, and the waiting topic's backlog
    grows for as long as the overload lasts (tests/faults/test_overload.py)."""
    built, sent = worker
    s = built.settings
    built.router.update_view([view("det-a", {"object_detection"}, lag=99, level=Level.CRITICAL)])
    async with built.route_frames.test_context() as agent:
        for frame_id in ("f1", "f2", "f3"):
            await agent.put(frame(frame_id, ["object_detection"]), key=b"cam-1")
    held = sent.records[f"{s.app_id}-waiting"]
    built.router.update_view([view("det-a", {"object_detection"}, lag=0)])
    sent.hold = True  # Kafka acknowledges nothing until the test says so
    async with built.drain_waiting.test_context() as drain:
        for record in held:
            await drain.put(json.dumps(record["value"]).encode(), key=record["key"], wait=False)
        try:
            for _ in range(50):
                if len(sent.futures) == 3:
                    break
                await asyncio.sleep(0.05)
            assert [(d["reason"], d["frame_id"]) for d in sent.values(s.dead_letter_topic)] == [
                ("shed", "f1"),
                ("shed", "f2"),
            ]
            assert [r["frame_id"] for r in sent.values(ready(s, "det-a"))] == ["f3"]
            # Handed on, but none of the held records is acked before its send is acknowledged.
            assert built.routing.acks.open_records() == 3
        finally:
            sent.hold = False
            for future in sent.futures:
                future.set_result(None)
        for _ in range(3):
            await asyncio.sleep(0)
        assert built.routing.acks.open_records() == 0


async def test_protected_frames_pause_until_there_is_room(worker: tuple[WorkerApp, Sent]) -> None:
    built, sent = worker
    critical = [view("det-a", {"object_detection"}, lag=99, level=Level.CRITICAL)]
    built.router.update_view(critical)
    s = built.settings
    async with built.route_frames.test_context() as agent:
        # put() returns once the stream took the event; the agent itself is still holding it.
        await agent.put(frame("vip", ["object_detection"], priority=9), key=b"cam-1")
        await asyncio.sleep(0.6)
        assert sent.records == {}  # paused: neither sent, nor held for shedding, nor dead-lettered
        built.router.update_view([view("det-a", {"object_detection"}, lag=10)])
        for _ in range(50):
            if sent.values(ready(s, "det-a")):
                break
            await asyncio.sleep(0.1)
    assert [r["frame_id"] for r in sent.values(ready(s, "det-a"))] == ["vip"]
    assert sent.values(s.dead_letter_topic) == [] and sent.values(f"{s.app_id}-waiting") == []


async def test_a_replayed_record_is_routed_again_but_a_redelivered_frame_is_not(
    worker: tuple[WorkerApp, Sent],
) -> None:
    built, sent = worker
    built.router.update_view([view("det-a", {"object_detection"})])
    async with built.route_frames.test_context() as agent:
        await agent.put(frame("f9", ["object_detection"]), key=b"cam-1")
        # A worker crash replays the same record (same partition and offset): routed again,
        # because its first send may never have reached Kafka.
        agent.sent_offset -= 1
        await agent.put(frame("f9", ["object_detection"]), key=b"cam-1")
        # The bridge re-sending the frame is a new record: a duplicate, dropped.
        await agent.put(frame("f9", ["object_detection"]), key=b"cam-1")
    assert [r["frame_id"] for r in sent.values(ready(built.settings, "det-a"))] == ["f9", "f9"]
    assert built.orch.stats.totals().deduplicated == 1
