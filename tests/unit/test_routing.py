"""Routing decisions: fan-out, power of two choices, bounded-load affinity, backpressure, dedupe."""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.dedupe import dedupe_key, within_window
from agents.routing import (
    ANY_CAPABILITY,
    REASON_ALL_CRITICAL,
    REASON_ANY,
    REASON_KEPT,
    REASON_MOVED_CRITICAL,
    REASON_MOVED_OVERLOADED,
    REASON_MOVED_UNHEALTHY,
    REASON_NEW,
    REASON_NO_CANDIDATE,
    REASON_ONLY,
    REASON_P2C,
    Action,
    Decision,
    ProcessorView,
    Router,
    stable_hash,
)
from core.levels import Level


def pv(
    pid: str,
    *caps: str,
    capacity: int = 100,
    stateful: bool = False,
    healthy: bool = True,
    lag: int = 0,
    level: Level = Level.NORMAL,
    sampled_at: float | None = None,
) -> ProcessorView:
    return ProcessorView(
        id=pid,
        capabilities=frozenset(caps or ("detect",)),
        capacity=capacity,
        stateful=stateful,
        healthy=healthy,
        lag=lag,
        level=level,
        sampled_at=sampled_at,
    )


def router(*views: ProcessorView, seed: int = 7, **kwargs: object) -> Router:
    # Most tests send thousands of frames against one sample, far past any real burst:
    # the line a router's own sends may not cross is tested on its own, below.
    kwargs.setdefault("critical_utilisation", math.inf)
    r = Router(rng=random.Random(seed), **kwargs)  # type: ignore[arg-type]
    r.update_view(views)
    return r


def send_many(r: Router, n: int, caps: tuple[str, ...] = ("detect",), record: bool = True) -> Counter[str]:
    counts: Counter[str] = Counter()
    for i in range(n):
        for d in r.route(list(caps), f"cam{i % 50}", 0, {}):
            assert d.action is Action.SEND and d.processor_id is not None
            counts[d.processor_id] += 1
            if record:
                r.record_sent(d.processor_id, float(i))
    return counts


# --- capabilities and fan-out ----------------------------------------------------------------
def test_fan_out_one_decision_per_capability() -> None:
    r = router(pv("det1", "detect"), pv("ocr1", "ocr"), pv("both", "detect", "ocr", lag=500))
    decisions = r.route(["detect", "ocr", "detect"], "cam1", 0, {})
    assert [d.capability for d in decisions] == ["detect", "ocr"]
    assert [d.processor_id for d in decisions] == ["det1", "ocr1"]  # "both" is far more loaded
    assert all(d.action is Action.SEND and d.reason == REASON_P2C for d in decisions)


def test_single_candidate_is_chosen() -> None:
    r = router(pv("only", "detect", lag=10_000))
    assert r.route(["detect"], "cam", 0, {}) == [Decision("detect", Action.SEND, "only", REASON_ONLY)]


def test_default_capabilities_apply_when_the_frame_names_none() -> None:
    r = router(pv("d", "detect"), pv("o", "ocr"), default_capabilities=["ocr", "detect", "ocr"])
    assert [(d.capability, d.processor_id) for d in r.route([], "cam", 0, {})] == [("ocr", "o"), ("detect", "d")]


def test_no_capabilities_and_no_defaults_goes_to_any_one_healthy_processor() -> None:
    r = router(pv("a", "x", "y"), pv("b", "z"), pv("sick", "w", healthy=False))
    seen = set()
    for i in range(200):
        (d,) = r.route([], f"cam{i}", 0, {})
        assert d.action is Action.SEND and d.reason == REASON_ANY
        assert d.processor_id in {"a", "b"}
        view = r.view(d.processor_id)
        assert view is not None and d.capability in view.capabilities
        seen.add(d.processor_id)
    assert seen == {"a", "b"}


def test_no_capable_processor_is_a_dead_letter() -> None:
    r = router(pv("d", "detect"), pv("sick", "ocr", healthy=False))
    ocr, det = r.route(["ocr", "detect"], "cam", 9, {})
    assert ocr == Decision("ocr", Action.DEAD_LETTER, None, REASON_NO_CANDIDATE, protected=True)
    assert det.action is Action.SEND
    assert r.route(["lidar"], "cam", 0, {})[0].action is Action.DEAD_LETTER
    empty = router()
    assert empty.route([], "cam", 0, {}) == [Decision(ANY_CAPABILITY, Action.DEAD_LETTER, None, REASON_NO_CANDIDATE)]


def test_unhealthy_processors_are_never_chosen() -> None:
    r = router(pv("ok"), pv("sick1", healthy=False), pv("sick2", healthy=False, stateful=True))
    assert r.candidates("detect") == ("ok",)
    assert send_many(r, 300) == {"ok": 300}


def test_update_view_rejects_bad_processors() -> None:
    with pytest.raises(ValueError, match="capacity"):
        router(pv("p", capacity=0))
    with pytest.raises(ValueError, match="capabilities"):
        Router().update_view([ProcessorView("p", frozenset(), 10)])


# --- power of two choices ---------------------------------------------------------------------
def test_p2c_spreads_evenly_over_equal_processors() -> None:
    r = router(*(pv(f"p{i}") for i in range(4)))
    counts = send_many(r, 10_000)
    assert set(counts) == {"p0", "p1", "p2", "p3"}
    assert max(counts.values()) - min(counts.values()) <= 10_000 * 0.02


def test_p2c_without_load_feedback_is_still_roughly_even() -> None:
    r = router(*(pv(f"p{i}") for i in range(4)))
    counts = send_many(r, 10_000, record=False)
    assert all(2_200 <= n <= 2_800 for n in counts.values()), counts


def test_p2c_gives_a_lagging_processor_clearly_fewer_frames() -> None:
    r = router(pv("p0"), pv("p1"), pv("p2"), pv("slow", lag=150))
    counts = send_many(r, 600)
    assert counts["slow"] < 0.5 * min(counts["p0"], counts["p1"], counts["p2"]), counts
    stale = router(pv("p0"), pv("p1"), pv("p2"), pv("slow", lag=150))
    assert send_many(stale, 2_000, record=False)["slow"] == 0  # it loses every pairing


def test_p2c_weighs_load_by_capacity() -> None:
    r = router(pv("big", capacity=1000, lag=100), pv("small", capacity=10, lag=5))
    counts = send_many(r, 1_100)
    # equal utilisation means ~100x the frames to the 100x larger processor
    assert counts["big"] > 20 * counts["small"], counts


def test_a_new_lag_sample_forgets_only_the_sends_it_already_counts() -> None:
    r = router(pv("p", lag=10, sampled_at=1.0))
    for at in (1.5, 1.6, 2.5):
        r.record_sent("p", at)
    assert r.load("p") == pytest.approx(0.13)
    r.update_view([pv("p", lag=10, sampled_at=1.0)])  # same sample: the sends still count
    assert r.load("p") == pytest.approx(0.13)
    # Taken at 2.0, the sample counts the two sends before it, not the one after.
    r.update_view([pv("p", lag=12, sampled_at=2.0)])
    assert r.load("p") == pytest.approx(0.13)
    r.update_view([pv("p", lag=14)])  # no sample stamp: every update is a new sample
    assert r.load("p") == pytest.approx(0.14)
    r.record_sent("gone", 3.0)  # a processor that left the view is ignored
    with pytest.raises(KeyError):
        r.load("gone")


def test_same_seed_same_decisions() -> None:
    views = [pv(f"p{i}", lag=i) for i in range(6)]
    a, b = router(*views, seed=3), router(*views, seed=3)
    assert send_many(a, 500) == send_many(b, 500)


# --- backpressure in routing ---------------------------------------------------------------------
def test_critical_processor_gets_nothing_while_another_has_room() -> None:
    r = router(pv("full", level=Level.CRITICAL), pv("busy", lag=90, level=Level.HIGH), pv("ok", lag=50))
    counts = send_many(r, 1_000)
    assert "full" not in counts
    assert set(counts) == {"busy", "ok"}


def test_all_critical_holds_and_says_whether_the_frame_is_protected() -> None:
    r = router(
        pv("a", level=Level.CRITICAL),
        pv("b", level=Level.CRITICAL, stateful=True),
        pv("c", "ocr", level=Level.ELEVATED),
        protected_priority=8,
    )
    low, ocr = r.route(["detect", "ocr"], "cam", 3, {"detect": "a"})
    assert low == Decision("detect", Action.HOLD, None, REASON_ALL_CRITICAL, protected=False)
    assert ocr.action is Action.SEND and ocr.processor_id == "c"
    (high,) = r.route(["detect"], "cam", 8, {})
    assert high.action is Action.HOLD and high.protected
    assert r.is_protected(8) and r.is_protected(10) and not r.is_protected(7)


def test_any_capability_hold_names_a_real_capability() -> None:
    r = router(pv("a", "x", level=Level.CRITICAL, lag=99), pv("b", "y", level=Level.CRITICAL, lag=96))
    (d,) = r.route([], "cam", 0, {})
    assert d.action is Action.HOLD and d.capability == "y"  # b is the least full
    assert r.route([d.capability], "cam", 0, {})[0].action is Action.HOLD


# --- stateful: consistent hashing with bounded loads ------------------------------------------------
def stateful(n: int = 4, **lags: int) -> list[ProcessorView]:
    return [pv(f"s{i}", stateful=True, lag=lags.get(f"s{i}", 0)) for i in range(n)]


def test_new_camera_gets_a_stable_ring_assignment() -> None:
    a = router(*stateful(), seed=1)
    b = router(*reversed(stateful()), seed=99)
    for i in range(100):
        (da,) = a.route(["detect"], f"cam{i}", 0, {})
        (db,) = b.route(["detect"], f"cam{i}", 0, {})
        assert da.reason == REASON_NEW and da.new_affinity
        assert da.processor_id == db.processor_id


def test_stable_hash_is_the_same_in_every_process() -> None:
    """Workers must agree on the ring: Python's hash() is salted per process, this must not be."""
    code = "from agents.routing import stable_hash; print(stable_hash('cam-1'), stable_hash('s0#3'))"
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert outputs == {f"{stable_hash('cam-1')} {stable_hash('s0#3')}\n"}


def test_ring_spreads_cameras_and_adding_a_processor_moves_few() -> None:
    four = router(*stateful(4))
    five = router(*stateful(5))
    before = {f"cam{i}": four.route(["detect"], f"cam{i}", 0, {})[0].processor_id for i in range(2_000)}
    after = {f"cam{i}": five.route(["detect"], f"cam{i}", 0, {})[0].processor_id for i in range(2_000)}
    shares = Counter(before.values())
    assert all(n >= 250 for n in shares.values()), shares
    moved = sum(before[c] != after[c] for c in before)
    assert all(after[c] == "s4" for c in before if before[c] != after[c])  # only onto the newcomer
    assert moved < 2_000 * 0.35


def test_affinity_is_kept_while_within_the_bound() -> None:
    r = router(*stateful(s0=81, s1=60, s2=60, s3=60))
    (d,) = r.route(["detect"], "cam", 0, {"detect": "s0"})
    assert d == Decision("detect", Action.SEND, "s0", REASON_KEPT)


def test_affinity_moves_only_past_the_one_plus_eps_bound() -> None:
    # avg = (83+180)/400; bound = 1.25 * avg = 0.822 < 0.83
    r = router(*stateful(s0=83, s1=60, s2=60, s3=60), affinity_epsilon=0.25)
    (d,) = r.route(["detect"], "cam", 0, {"detect": "s0"})
    assert d.reason == REASON_MOVED_OVERLOADED and d.new_affinity
    assert d.processor_id in {"s1", "s2", "s3"}
    loose = router(*stateful(s0=83, s1=60, s2=60, s3=60), affinity_epsilon=0.5)
    assert loose.route(["detect"], "cam", 0, {"detect": "s0"})[0].reason == REASON_KEPT


def test_frames_sent_since_the_sample_count_towards_the_bound() -> None:
    r = router(*stateful(s0=81, s1=60, s2=60, s3=60))
    assert r.route(["detect"], "cam", 0, {"detect": "s0"})[0].reason == REASON_KEPT
    for t in range(3):
        r.record_sent("s0", float(t))
    assert r.route(["detect"], "cam", 0, {"detect": "s0"})[0].reason == REASON_MOVED_OVERLOADED


def test_affinity_does_not_churn_at_low_load() -> None:
    # 10% vs 0%: far above 1.25 x average, but far from full, so moving state is not worth it
    r = router(*stateful(s0=10))
    assert r.route(["detect"], "cam", 0, {"detect": "s0"})[0].reason == REASON_KEPT
    eager = router(*stateful(s0=10), overload_floor=0.0)
    assert eager.route(["detect"], "cam", 0, {"detect": "s0"})[0].reason == REASON_MOVED_OVERLOADED


def test_affinity_moves_when_the_processor_is_unhealthy_or_gone() -> None:
    views = stateful()
    views[2] = pv("s2", stateful=True, healthy=False)
    r = router(*views)
    (d,) = r.route(["detect"], "cam", 0, {"detect": "s2"})
    assert d.reason == REASON_MOVED_UNHEALTHY and d.new_affinity and d.processor_id in {"s0", "s1", "s3"}
    (gone,) = r.route(["detect"], "cam", 0, {"detect": "s9"})
    assert gone.reason == REASON_MOVED_UNHEALTHY and gone.processor_id in {"s0", "s1", "s3"}


def test_affinity_moves_off_a_critical_processor_while_peers_have_room() -> None:
    views = stateful()
    views[1] = pv("s1", stateful=True, lag=96, level=Level.CRITICAL)
    r = router(*views)
    (d,) = r.route(["detect"], "cam", 0, {"detect": "s1"})
    assert d.reason == REASON_MOVED_CRITICAL and d.processor_id != "s1" and d.new_affinity


def test_new_cameras_avoid_a_processor_above_the_bound() -> None:
    r = router(*stateful(s0=90, s1=10, s2=10, s3=10))
    counts = Counter(r.route(["detect"], f"cam{i}", 0, {})[0].processor_id for i in range(500))
    assert "s0" not in counts and set(counts) == {"s1", "s2", "s3"}


def test_affinity_for_a_stateless_capability_is_ignored() -> None:
    r = router(pv("a"), pv("b"))
    decisions = [r.route(["detect"], "cam", 0, {"detect": "a"})[0] for _ in range(50)]
    assert {d.processor_id for d in decisions} == {"a", "b"}
    assert not any(d.new_affinity for d in decisions)


def test_route_with_a_kept_affinity_reports_nothing_to_persist() -> None:
    r = router(*stateful())
    affinity: dict[str, str] = {}
    persisted = 0
    for _ in range(20):
        (d,) = r.route(["detect"], "cam7", 0, affinity)
        if d.new_affinity:
            assert d.processor_id is not None
            affinity = {**affinity, d.capability: d.processor_id}
            persisted += 1
    assert persisted == 1


# --- properties -------------------------------------------------------------------------------------------
CAPS = ["a", "b", "c"]
view_strategy = st.builds(
    ProcessorView,
    id=st.sampled_from([f"p{i}" for i in range(8)]),
    capabilities=st.frozensets(st.sampled_from(CAPS), min_size=1),
    capacity=st.integers(1, 1000),
    stateful=st.booleans(),
    healthy=st.booleans(),
    lag=st.integers(0, 2000),
    level=st.sampled_from(list(Level)),
)


@settings(max_examples=300, deadline=None)
@given(
    views=st.lists(view_strategy, max_size=8),
    wanted=st.lists(st.sampled_from([*CAPS, "zzz"]), max_size=4),
    affinity=st.dictionaries(st.sampled_from(CAPS), st.sampled_from([f"p{i}" for i in range(9)])),
    priority=st.integers(0, 10),
    seed=st.integers(0, 2**16),
)
def test_route_only_ever_picks_a_healthy_capable_processor_with_room(
    views: list[ProcessorView], wanted: list[str], affinity: dict[str, str], priority: int, seed: int
) -> None:
    r = router(*views, seed=seed)
    final = {v.id: v for v in views}  # a repeated id: the last view wins
    decisions = r.route(wanted, "cam", priority, affinity)
    expected_caps = list(dict.fromkeys(wanted)) if wanted else None
    if expected_caps is not None:
        assert [d.capability for d in decisions] == expected_caps
    else:
        assert len(decisions) == 1
    for d in decisions:
        assert d.protected == (priority >= 8)
        healthy = [v for v in final.values() if v.healthy and (expected_caps is None or d.capability in v.capabilities)]
        with_room = [v for v in healthy if v.level is not Level.CRITICAL]
        if not healthy:
            assert d.action is Action.DEAD_LETTER and d.reason == REASON_NO_CANDIDATE
        elif not with_room:
            assert d.action is Action.HOLD and d.reason == REASON_ALL_CRITICAL
        else:
            assert d.action is Action.SEND and d.processor_id is not None
            chosen = final[d.processor_id]
            assert chosen.healthy and chosen.level is not Level.CRITICAL
            assert d.capability in chosen.capabilities
            if d.new_affinity:
                assert affinity.get(d.capability) != d.processor_id


# --- dedupe ---------------------------------------------------------------------------------------------
def test_dedupe_key_is_per_frame_and_capability() -> None:
    assert dedupe_key("f1", "detect") == "f1|detect"
    assert dedupe_key("f1", "detect") != dedupe_key("f1", "ocr")
    assert dedupe_key("a|b", "c").rsplit("|", 1) == ["a|b", "c"]  # capabilities never contain '|'


def test_dedupe_window() -> None:
    assert within_window(100.0, 100.0, 600)
    assert within_window(100.0, 699.9, 600)
    assert not within_window(100.0, 700.0, 600)
    assert within_window(105.0, 100.0, 600)  # clock skew: a future stamp is still "seen"
    assert not within_window(None, 100.0, 600)
    with pytest.raises(ValueError):
        within_window(1.0, 2.0, 0)


def test_sends_since_the_sample_may_not_fill_a_processor_past_the_critical_line() -> None:
    r = router(pv("a", lag=80, sampled_at=1.0), pv("b", lag=90, sampled_at=1.0), critical_utilisation=0.95)
    counts = send_many(r, 20)
    # a takes frames until lag+sent reaches 95, then b until it does: 15 + 5, then HOLD.
    assert counts == {"a": 15, "b": 5}, counts
    assert r.route(["detect"], "cam", 0, {})[0].action is Action.HOLD
    r.update_view([pv("a", lag=10, sampled_at=2.0), pv("b", lag=90, sampled_at=2.0)])  # a drained
    assert r.route(["detect"], "cam", 0, {})[0].processor_id == "a"


def test_a_stateful_camera_leaves_a_processor_its_router_filled() -> None:
    r = router(pv("s0", lag=94, stateful=True), pv("s1", lag=90, stateful=True), critical_utilisation=0.95)
    first = r.route(["detect"], "cam", 0, {"detect": "s0"})[0]
    assert (first.processor_id, first.new_affinity) == ("s0", False)
    r.record_sent("s0", 5.0)
    moved = r.route(["detect"], "cam", 0, {"detect": "s0"})[0]
    assert (moved.action, moved.processor_id, moved.new_affinity) == (Action.SEND, "s1", True)


def test_a_stale_sample_stops_the_routers_own_sends_from_holding_frames() -> None:
    # The leader stalled at t=1: its last sample says a and b are empty, and they stay so
    # (their processors drain what they get), but no new sample comes.
    views = (pv("a", lag=0, sampled_at=1.0), pv("b", lag=0, sampled_at=1.0))
    r = router(*views, critical_utilisation=0.95, stale_sample_seconds=5.0)
    held = 0
    for i in range(1000):
        at = 10.0 + i * 0.01  # 9 s and more after the sample
        d = r.route(["detect"], f"cam{i % 50}", 0, {})[0]
        if d.action is Action.HOLD:
            held += 1
        else:
            assert d.processor_id is not None
            r.record_sent(d.processor_id, at)
    assert held == 0
    # Only the last 5 s of sends are remembered: the count stays bounded, and still spread.
    assert r.load("a") + r.load("b") <= 1000 / 100
    assert abs(r.load("a") - r.load("b")) < 0.2


def test_a_fresh_sample_still_holds_frames_the_router_itself_would_overfill() -> None:
    r = router(pv("a", lag=0, sampled_at=1.0), critical_utilisation=0.95, stale_sample_seconds=5.0)
    decisions = []
    for i in range(100):
        d = r.route(["detect"], "cam", 0, {})[0]
        decisions.append(d.action)
        if d.processor_id is not None:
            r.record_sent(d.processor_id, 2.0 + i * 0.01)
    assert decisions.count(Action.SEND) == 95 and decisions.count(Action.HOLD) == 5
    # A new sample after the stall: its age is judged afresh, and the line holds again.
    r.update_view([pv("a", lag=0, sampled_at=100.0)])
    r.record_sent("a", 100.5)
    assert r.route(["detect"], "cam", 0, {})[0].action is Action.SEND


def test_stale_sample_seconds_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Router(stale_sample_seconds=0)
