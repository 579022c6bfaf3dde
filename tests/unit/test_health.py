"""Processor health state machine: missed heartbeats, stalls, recovery."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.health import HealthTracker, StatusChange
from app.configs import health_config
from core.settings import load_settings
from frame_buffer_sdk.models import ProcessorStatus as S


def tracker() -> HealthTracker:
    return HealthTracker(heartbeat_interval=5.0, heartbeat_misses=3, stall_timeout=30.0, recovery_heartbeats=2)


def beat(h: HealthTracker, t: float, committed: int, lag: int, pid: str = "p") -> list[StatusChange]:
    """One watcher tick at a moment a heartbeat also arrived, as the leader feeds it."""
    h.heartbeat(pid, t)
    h.offsets(pid, committed, lag, t)
    return h.evaluate(t)


def test_regular_heartbeats_and_moving_offsets_stay_healthy() -> None:
    h = tracker()
    for i in range(20):
        assert beat(h, i * 5.0, committed=i * 10, lag=3) == []
    assert h.status("p") is S.HEALTHY


def test_three_missed_heartbeats_make_a_processor_unhealthy_once() -> None:
    h = tracker()
    beat(h, 0.0, 0, 0)
    assert h.evaluate(14.9) == []
    (change,) = h.evaluate(15.1)
    assert (change.processor_id, change.old, change.new) == ("p", S.HEALTHY, S.UNHEALTHY)
    assert "no heartbeat for 15.1s" in change.reason
    assert h.status("p") is S.UNHEALTHY
    assert h.evaluate(40.0) == []


def test_recovery_after_two_fresh_heartbeats_with_moving_offsets() -> None:
    h = tracker()
    beat(h, 0.0, 100, 5)
    h.evaluate(16.0)
    assert h.status("p") is S.UNHEALTHY
    assert beat(h, 20.0, 110, 5) == []  # one fresh heartbeat is not enough
    assert h.evaluate(22.0) == []  # evaluating again without a new heartbeat counts nothing
    (change,) = beat(h, 25.0, 120, 4)
    assert (change.old, change.new) == (S.UNHEALTHY, S.HEALTHY)


def test_heartbeats_without_progress_do_not_recover_and_then_it_stalls() -> None:
    h = tracker()
    beat(h, 0.0, 100, 5)
    h.evaluate(16.0)
    assert beat(h, 20.0, 100, 6) == []
    assert beat(h, 25.0, 100, 7) == []
    assert h.status("p") is S.UNHEALTHY
    (change,) = beat(h, 30.0, 100, 8)  # offsets still since t=0 and lag grew 5 -> 8
    assert (change.old, change.new) == (S.UNHEALTHY, S.STALLED)


def test_an_idle_processor_recovers_with_lag_zero() -> None:
    h = tracker()
    beat(h, 0.0, 100, 0)
    h.evaluate(16.0)
    assert beat(h, 60.0, 100, 0) == []
    (change,) = beat(h, 65.0, 100, 0)
    assert change.new is S.HEALTHY


def test_growing_lag_with_standing_offsets_stalls_after_the_timeout() -> None:
    h = tracker()
    beat(h, 0.0, 500, 0)
    for t in range(5, 30, 5):
        assert beat(h, float(t), 500, t) == []
    (change,) = beat(h, 30.0, 500, 30)
    assert (change.old, change.new) == (S.HEALTHY, S.STALLED)
    assert "0 -> 30" in change.reason


def test_idle_processor_with_standing_offsets_is_not_stalled() -> None:
    h = tracker()
    for t in range(0, 120, 5):
        assert beat(h, float(t), 500, 0) == []


def test_moving_offsets_are_never_stalled_even_with_growing_lag() -> None:
    h = tracker()
    for i in range(30):
        assert beat(h, i * 5.0, committed=i, lag=10 * i) == []


def test_a_stalled_processor_recovers_once_offsets_move_for_two_heartbeats() -> None:
    h = tracker()
    beat(h, 0.0, 500, 1)
    beat(h, 30.0, 500, 40)
    assert h.status("p") is S.STALLED
    assert beat(h, 35.0, 520, 30) == []
    (change,) = beat(h, 40.0, 540, 20)
    assert (change.old, change.new) == (S.STALLED, S.HEALTHY)
    assert beat(h, 45.0, 540, 25) == []  # the stall clock restarted at the last offset move


def test_a_stalled_processor_that_stops_heartbeating_becomes_unhealthy() -> None:
    h = tracker()
    beat(h, 0.0, 500, 1)
    beat(h, 30.0, 500, 40)
    (change,) = h.evaluate(46.0)
    assert (change.old, change.new) == (S.STALLED, S.UNHEALTHY)


def test_reordered_old_heartbeats_are_ignored() -> None:
    h = tracker()
    h.heartbeat("p", 10.0)
    h.heartbeat("p", 2.0)
    assert h.evaluate(24.0) == []
    assert h.evaluate(25.5)[0].new is S.UNHEALTHY


def test_heartbeats_seen_before_the_failure_do_not_count_towards_recovery() -> None:
    h = tracker()
    beat(h, 0.0, 1, 0)
    h.evaluate(16.0)
    h.heartbeat("p", 0.0)  # the same pre-failure heartbeat fed again
    h.evaluate(16.5)
    assert h.status("p") is S.UNHEALTHY
    assert beat(h, 20.0, 2, 0) == []
    assert beat(h, 25.0, 3, 0)[0].new is S.HEALTHY


def test_no_offset_samples_at_all_heartbeats_decide_alone() -> None:
    h = tracker()
    h.heartbeat("p", 0.0)
    h.evaluate(16.0)
    h.heartbeat("p", 20.0)
    assert h.evaluate(20.0) == []
    h.heartbeat("p", 25.0)
    assert h.evaluate(25.0)[0].new is S.HEALTHY


def test_tracking_starts_from_a_known_status_after_a_leader_change() -> None:
    h = tracker()
    h.track("p", S.UNHEALTHY, 100.0)
    h.track("p", S.HEALTHY, 100.0)  # already tracked: no-op
    assert h.status("p") is S.UNHEALTHY
    assert beat(h, 100.0, 7, 2) == []  # the first offsets sample is not movement
    assert beat(h, 105.0, 9, 2) == []
    assert beat(h, 110.0, 11, 2)[0].new is S.HEALTHY


def test_statuses_the_tracker_does_not_judge_are_left_alone() -> None:
    h = tracker()
    h.track("d", S.DRAINING, 0.0)
    assert h.evaluate(1000.0) == []
    assert h.status("d") is S.DRAINING


def test_forgotten_processors_are_gone() -> None:
    h = tracker()
    beat(h, 0.0, 0, 0, pid="a")
    beat(h, 0.0, 0, 0, pid="b")
    h.forget("a")
    h.forget("never-seen")
    assert h.tracked() == ["b"]
    assert [c.processor_id for c in h.evaluate(100.0)] == ["b"]
    assert h.status("a") is S.HEALTHY


def test_changes_come_in_processor_order_and_settings_are_honoured() -> None:
    settings = load_settings(heartbeat_interval=1.0, heartbeat_misses=2, recovery_heartbeats=1)
    h = HealthTracker.from_config(health_config(settings))
    assert h.deadline == 2.0
    for pid in ("z", "a", "m"):
        h.heartbeat(pid, 0.0)
    h.heartbeat("peer", 2.5)  # the heartbeat path works: the others' silence is their own
    assert [c.processor_id for c in h.evaluate(2.5)] == ["a", "m", "z"]
    h.heartbeat("m", 3.0)
    assert h.evaluate(3.0) == [StatusChange("m", S.UNHEALTHY, S.HEALTHY, "1 fresh heartbeats with progress")]


def test_silence_is_measured_up_to_the_newest_heartbeat_the_path_delivered() -> None:
    h = HealthTracker(heartbeat_interval=2.0, heartbeat_misses=3)  # deadline 6 s
    h.heartbeat("det", 10.0)
    h.heartbeat("face", 11.5)
    # The path slowed down: only face got through since, late. det is not singled out.
    h.heartbeat("face", 14.0)
    assert h.evaluate(18.0) == []
    # face keeps getting through while det does not: det's silence is its own.
    h.heartbeat("face", 16.5)
    assert [(c.processor_id, c.new) for c in h.evaluate(18.5)] == [("det", S.UNHEALTHY)]


def test_a_lone_processor_is_judged_by_the_clock() -> None:
    h = HealthTracker(heartbeat_interval=2.0, heartbeat_misses=3)
    h.heartbeat("only", 10.0)
    assert [c.new for c in h.evaluate(16.5)] == [S.UNHEALTHY]


def test_invalid_parameters_are_rejected() -> None:
    with pytest.raises(ValueError):
        HealthTracker(heartbeat_interval=0)
    with pytest.raises(ValueError):
        HealthTracker(recovery_heartbeats=0)


events = st.lists(
    st.tuples(
        st.sampled_from(["hb", "off", "eval"]),
        st.floats(0, 20),
        st.integers(0, 3),
        st.integers(0, 50),
    ),
    max_size=60,
)


@given(events)
def test_reported_changes_chain_from_the_previous_status(ops: list[tuple[str, float, int, int]]) -> None:
    h = tracker()
    now = 0.0
    last = S.HEALTHY
    for kind, step, committed, lag in ops:
        now += step
        if kind == "hb":
            h.heartbeat("p", now)
        elif kind == "off":
            h.offsets("p", committed, lag, now)
        else:
            for change in h.evaluate(now):
                assert change.old is last and change.new is not change.old and change.reason
                last = change.new
            assert h.status("p") is last
