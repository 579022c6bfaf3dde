"""A CRITICAL level whose lag sample is stale holds no frame (issue 10: a stale CRITICAL sample).

The leader publishes every processor's level with its lag sample; when the leader stalls the
last level stays in the table. A router that kept obeying a frozen CRITICAL would hold protected
frames until a fresh sample came, which a stalled leader never sends, while the processors sit idle.
"""

from __future__ import annotations

import random
import time
from types import SimpleNamespace
from typing import Any

from agents.routing import REASON_ALL_CRITICAL, Action, ProcessorView, Router
from agents.worker_timers import refresh_view
from bridge.throttle import State, decide, parse_level
from core.levels import Level
from tests.unit.test_worker_views import record

PROTECTED = 9
STALE = 5.0


def pv(pid: str, level: Level, sampled_at: float, lag: int = 0, stateful: bool = False) -> ProcessorView:
    caps = frozenset({"detect"})
    return ProcessorView(pid, caps, 100, stateful=stateful, lag=lag, level=level, sampled_at=sampled_at)


def router() -> Router:
    return Router(rng=random.Random(3), protected_priority=8, stale_sample_seconds=STALE)


def test_a_fresh_critical_level_holds_a_protected_frame() -> None:
    r = router()
    r.update_view([pv("a", Level.CRITICAL, 100.0, lag=99), pv("b", Level.CRITICAL, 100.0, lag=99)], now=101.0)
    d = r.route(["detect"], "cam", PROTECTED, {})[0]
    assert (d.action, d.reason, d.protected) == (Action.HOLD, REASON_ALL_CRITICAL, True)


def test_a_critical_level_from_a_stale_sample_holds_nothing() -> None:
    r = router()
    views = [pv("a", Level.CRITICAL, 100.0, lag=99), pv("b", Level.CRITICAL, 100.0, lag=99)]
    r.update_view(views, now=100.0 + STALE + 0.5)  # the leader stopped sampling
    decisions = [r.route(["detect"], f"cam{i}", PROTECTED, {})[0] for i in range(20)]
    assert {d.action for d in decisions} == {Action.SEND}
    assert {d.processor_id for d in decisions} <= {"a", "b"}
    # Nor do this router's own sends since the stale sample fill the processors' room.
    for i in range(200):
        d = r.route(["detect"], f"cam{i}", PROTECTED, {})[0]
        assert d.action is Action.SEND and d.processor_id is not None
        r.record_sent(d.processor_id, 106.0 + i * 0.001)


def test_the_same_level_holds_again_once_a_fresh_sample_says_critical() -> None:
    r = router()
    r.update_view([pv("a", Level.CRITICAL, 100.0, lag=99)], now=110.0)
    assert r.route(["detect"], "cam", PROTECTED, {})[0].action is Action.SEND
    r.update_view([pv("a", Level.CRITICAL, 111.0, lag=99)], now=111.5)
    assert r.route(["detect"], "cam", PROTECTED, {})[0].action is Action.HOLD


def test_a_fresh_critical_peer_still_gets_nothing_beside_one_whose_level_is_unknown() -> None:
    r = router()
    r.update_view([pv("full", Level.CRITICAL, 109.0, lag=99), pv("unknown", Level.CRITICAL, 100.0, lag=99)], now=110.0)
    decisions = [r.route(["detect"], f"cam{i}", PROTECTED, {})[0] for i in range(20)]
    assert {(d.action, d.processor_id) for d in decisions} == {(Action.SEND, "unknown")}


def test_the_freshest_information_decides_between_peers() -> None:
    # b's frozen sample said CRITICAL at lag 99; a's fresh one says NORMAL at lag 10: a gets the frames.
    r = router()
    r.update_view([pv("a", Level.NORMAL, 109.0, lag=10), pv("b", Level.CRITICAL, 100.0, lag=99)], now=110.0)
    decisions = [r.route(["detect"], f"cam{i}", PROTECTED, {})[0] for i in range(20)]
    assert {(d.action, d.processor_id) for d in decisions} == {(Action.SEND, "a")}


def test_a_stateful_camera_on_a_processor_whose_level_is_stale_is_not_moved_as_critical() -> None:
    r = router()
    views = [pv("a", Level.CRITICAL, 100.0, stateful=True), pv("b", Level.NORMAL, 100.0, stateful=True)]
    r.update_view(views, now=101.0)
    assert r.route(["detect"], "cam", PROTECTED, {"detect": "a"})[0].reason == "affinity_moved:critical"
    r.update_view(views, now=110.0)
    d = r.route(["detect"], "cam", PROTECTED, {"detect": "a"})[0]
    assert (d.action, d.processor_id, d.reason) == (Action.SEND, "a", "affinity_kept")


def test_the_workers_view_refresh_judges_sample_ages_by_the_wall_clock() -> None:
    report = {"lag": 99, "level": "CRITICAL", "status": "healthy", "sampled_at": time.time() - 60}
    rec = {**record("a"), "capabilities": ["detect"]}
    orch: Any = SimpleNamespace(tables=SimpleNamespace(registry={"a": rec}, load={"a": report}))
    r = router()
    refresh_view(orch, r)
    assert r.route(["detect"], "cam", PROTECTED, {})[0].action is Action.SEND
    orch.tables.load["a"] = {**report, "sampled_at": time.time()}
    refresh_view(orch, r)
    assert r.route(["detect"], "cam", PROTECTED, {})[0].action is Action.HOLD


def test_the_bridge_reads_an_expired_critical_key_as_normal() -> None:
    # The bridge's equivalent: the leader writes its level with a TTL (watch_health), and a key
    # the stalled leader no longer refreshes expires; what the bridge then reads is None.
    assert parse_level(None) is Level.NORMAL
    assert decide(parse_level(None), 500).state is State.RUNNING
    assert decide(parse_level(b'{"level": "CRITICAL"}'), 500).state is State.PAUSED
