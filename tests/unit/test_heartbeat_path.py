"""The leader holds health verdicts when the heartbeat path, not the processors, went quiet."""

from __future__ import annotations

from agents.health import HealthTracker, heartbeat_path_silent

INTERVAL = 2.0
TRACKER = HealthTracker(heartbeat_interval=INTERVAL, heartbeat_misses=3)
DEADLINE = TRACKER.deadline  # 6 s


def test_processors_quiet_at_their_own_phases_are_a_silent_path_before_any_crosses_its_deadline() -> None:
    # The worker taking heartbeats froze at t=10; each processor had last beaten at its own phase.
    beats = [10.0 - INTERVAL + 0.1, 10.0 - 1.0, 10.0]
    first_past_deadline = min(beats) + DEADLINE
    assert not heartbeat_path_silent(beats, first_past_deadline - 3.5, DEADLINE)
    assert heartbeat_path_silent(beats, first_past_deadline - 0.1, DEADLINE), "the first verdict would come first"


def test_one_processor_silent_while_others_beat_is_that_processor() -> None:
    now = 100.0
    beats = [now - DEADLINE - 5, now - 0.5, now - INTERVAL]  # the first is dead, the others healthy
    assert not heartbeat_path_silent(beats, now, DEADLINE)


def test_a_healthy_path_gap_of_one_interval_is_not_silence() -> None:
    now = 50.0
    assert not heartbeat_path_silent([now - INTERVAL, now - INTERVAL - 0.5], now, DEADLINE)


def test_a_single_processor_proves_nothing_about_the_path() -> None:
    assert not heartbeat_path_silent([0.0], 1000.0, DEADLINE)
    assert not heartbeat_path_silent([], 1000.0, DEADLINE)
