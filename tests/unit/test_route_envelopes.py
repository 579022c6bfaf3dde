"""The router's hot path through test_context(): envelopes, acks after delivery, the dedupe index."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.latest_waiting import Held
from app.main import WorkerApp
from core import envelope
from core.levels import Level
from tests.unit.router_fakes import Sent, frame, ready, view, worker

__all__ = ["worker"]  # the fixture, imported for pytest


def env(*frames: bytes) -> bytes:
    return envelope.encode(list(frames))


def ids(sent: Sent, topic: str) -> list[str]:
    return [r["frame_id"] for r in sent.values(topic)]


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_an_envelope_is_routed_in_order_and_acked_only_after_every_delivery(
    worker: tuple[WorkerApp, Sent],
) -> None:
    built, sent = worker
    built.router.update_view([view("det-a", {"object_detection"}), view("face", {"face_recognition"})])
    sent.hold = True
    caps = ["object_detection", "face_recognition"]
    async with built.route_frames.test_context() as agent:
        event = await agent.put(env(frame("e1", caps), frame("e2", caps), frame("e3", caps)), key=b"cam-1")
        await settle()
        s = built.settings
        assert ids(sent, ready(s, "det-a")) == ["e1", "e2", "e3"] == ids(sent, ready(s, "face"))
        assert len(sent.futures) == 6
        for future in sent.futures[:-1]:
            future.set_result(None)
        await settle()
        built.orch.stats.flush()
        assert not event.message.acked  # one routed record is still unacknowledged
        sent.futures[-1].set_result(None)
        await settle()
        assert event.message.acked
    assert built.orch.stats.totals().captured == 3 and built.orch.stats.totals().routed == 6


async def test_records_of_a_partition_are_acked_in_offset_order(worker: tuple[WorkerApp, Sent]) -> None:
    built, sent = worker
    built.router.update_view([view("det-a", {"object_detection"})])
    sent.hold = True
    async with built.route_frames.test_context() as agent:
        first = await agent.put(frame("a", ["object_detection"]), key=b"cam-1", partition=0)
        second = await agent.put(frame("b", ["object_detection"]), key=b"cam-1", partition=0)
        await settle()
        sent.futures[1].set_result(None)  # the later record's send finishes first
        await settle()
        built.orch.stats.flush()
        assert not first.message.acked and not second.message.acked
        sent.futures[0].set_result(None)
        await settle()
        assert first.message.acked and second.message.acked


async def test_a_failed_delivery_acks_nothing_after_it_and_stops_the_worker(worker: tuple[WorkerApp, Sent]) -> None:
    built, sent = worker
    built.router.update_view([view("det-a", {"object_detection"})])
    failures: list[BaseException] = []
    built.routing.on_fatal = failures.append
    sent.hold = True
    async with built.route_frames.test_context() as agent:
        first = await agent.put(frame("a", ["object_detection"]), key=b"cam-1", partition=0)
        second = await agent.put(frame("b", ["object_detection"]), key=b"cam-1", partition=0)
        await settle()
        sent.futures[0].set_exception(RuntimeError("refused by the broker"))
        sent.futures[1].set_result(None)
        await settle()
        built.orch.stats.flush()
        # Neither is committable: the worker stops and routes both again from the last commit.
        assert not first.message.acked and not second.message.acked
    assert [str(f) for f in failures] == ["refused by the broker"]


async def test_single_and_envelope_records_share_one_dedupe(worker: tuple[WorkerApp, Sent]) -> None:
    built, sent = worker
    built.router.update_view([view("det-a", {"object_detection"})])
    caps = ["object_detection"]
    async with built.route_frames.test_context() as agent:
        await agent.put(frame("m1", caps), key=b"cam-1")
        await agent.put(env(frame("m1", caps), frame("m2", caps)), key=b"cam-1")  # m1 again, from the bridge
        await agent.put(env(frame("m2", caps), frame("m3", caps)), key=b"cam-1")
    assert ids(sent, ready(built.settings, "det-a")) == ["m1", "m2", "m3"]
    assert built.orch.stats.totals().deduplicated == 2


async def test_bad_frames_in_an_envelope_are_dead_lettered_alone(worker: tuple[WorkerApp, Sent]) -> None:
    built, sent = worker
    built.router.update_view([view("det-a", {"object_detection"})])
    caps = ["object_detection"]
    async with built.route_frames.test_context() as agent:
        await agent.put(env(frame("ok1", caps), b'{"frame_id": "bad"}', frame("ok2", caps)), key=b"cam-1")
        await agent.put(b"[not json", key=b"cam-1")
    s = built.settings
    assert ids(sent, ready(s, "det-a")) == ["ok1", "ok2"]
    letters = sent.values(s.dead_letter_topic)
    assert [d["reason"] for d in letters] == ["invalid_frame", "invalid_frame"]
    assert "bad" in letters[0]["raw"]["value"] and "not a JSON array" in letters[1]["detail"]
    assert built.orch.stats.totals().captured == 5 - 1  # two good, one bad frame, one bad record


async def test_hold_shed_and_rerouting_on_envelopes(worker: tuple[WorkerApp, Sent]) -> None:
    built, sent = worker
    s = built.settings
    caps = ["object_detection"]
    built.router.update_view([view("det-a", {"object_detection"}, lag=99, level=Level.CRITICAL)])
    async with built.route_frames.test_context() as agent:
        await agent.put(env(frame("h1", caps), frame("h2", caps)), key=b"cam-1")
    assert [h["frame"]["frame_id"] for h in sent.values(f"{s.app_id}-waiting")] == ["h1", "h2"]
    assert built.routing.newest_held(0, "cam-1|object_detection") == Held("h2", (0, 1))

    # Failover re-sends a frame routed to det-a, marked rerouted_from: routed again, to the peer.
    built.router.update_view([view("det-a", {"object_detection"})])
    async with built.route_frames.test_context() as agent:
        agent.sent_offset = 1  # the partition's next record: its offsets go on
        await agent.put(env(frame("r1", caps)), key=b"cam-1")
    assert ids(sent, ready(s, "det-a")) == ["r1"]
    moved = json.loads(frame("r1", caps))
    moved["metadata"] = {"rerouted_from": "det-a"}
    built.router.update_view([view("det-a", {"object_detection"}, healthy=False), view("det-b", {"object_detection"})])
    async with built.route_frames.test_context() as agent:
        agent.sent_offset = 2
        await agent.put(env(json.dumps(moved).encode(), frame("r2", caps)), key=b"cam-1")
    assert ids(sent, ready(s, "det-b")) == ["r1", "r2"]
    assert built.orch.stats.totals().rerouted == 1 and built.orch.stats.totals().deduplicated == 0


async def test_the_dedupe_index_is_rebuilt_from_its_table_after_a_rebalance(worker: tuple[WorkerApp, Sent]) -> None:
    built, sent = worker
    built.router.update_view([view("det-a", {"object_detection"})])
    built.routing.index.flush_seconds = 0  # every record flushes its batch
    caps = ["object_detection"]
    async with built.route_frames.test_context() as agent:
        await agent.put(env(frame("d1", caps), frame("d2", caps)), key=b"cam-1", partition=2)
        built.routing.forget([2])  # revoked, then assigned again: memory is gone, the table is not
        assert len(built.routing.index) == 0
        await agent.put(env(frame("d2", caps), frame("d3", caps)), key=b"cam-1", partition=2)
    assert ids(sent, ready(built.settings, "det-a")) == ["d1", "d2", "d3"]
    assert built.orch.stats.totals().deduplicated == 1
    assert len(built.routing.index) == 3


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cameras=st.lists(st.sampled_from(["c1", "c2", "c3"]), min_size=1, max_size=30),
    cuts=st.lists(st.integers(min_value=1, max_value=6), min_size=1, max_size=30),
    critical=st.lists(st.booleans(), min_size=1, max_size=30),
)
async def test_per_camera_order_holds_across_envelopes_and_holds(
    worker: tuple[WorkerApp, Sent], cameras: list[str], cuts: list[int], critical: list[bool]
) -> None:
    built, sent = worker
    sent.records.clear()
    run = next(_RUNS)  # frame ids unique across examples: the worker's dedupe index outlives each one
    caps = ["object_detection"]
    frames = [(cam, f"{run}-{i}") for i, cam in enumerate(cameras)]
    records: list[list[tuple[str, str]]] = []
    i = 0
    for cut in cuts * len(frames):
        if i >= len(frames):
            break
        records.append(frames[i : i + cut])
        i += cut
    async with built.route_frames.test_context() as agent:
        for n, record in enumerate(records):
            full = critical[n % len(critical)]
            level = Level.CRITICAL if full else Level.NORMAL
            built.router.update_view([view("det-a", {"object_detection"}, lag=99 if full else 0, level=level)])
            await agent.put(env(*(frame(fid, caps, camera=cam) for cam, fid in record)), key=b"k", partition=0)
    sent_order = [r["value"].get("frame_id") or r["value"]["frame"]["frame_id"] for r in _in_send_order(sent)]
    assert sorted(sent_order) == sorted(fid for _, fid in frames)
    for cam in {"c1", "c2", "c3"}:
        expected = [fid for c, fid in frames if c == cam]
        assert [fid for fid in sent_order if fid in expected] == expected


_RUNS = itertools.count()


def _in_send_order(sent: Sent) -> list[dict[str, Any]]:
    return sorted((r for rs in sent.records.values() for r in rs), key=lambda r: r["seq"])
