"""The leader holds health verdicts when the heartbeat path, not the processors, went quiet."""

from __future__ import annotations

from agents.health import HealthTracker, heartbeat_path_silent
from frame_buffer_sdk.models import ProcessorStatus

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


# --- the leader's tick through the same path (agents.path_tick) ------------------------------
def late_path_run(delay: float, ticks: bool, dies_at: float | None = None, until: float = 120.0) -> list[float]:
    """A lone processor beating every INTERVAL (until ``dies_at``), its heartbeats and the leader's
    ticks (one a second) delivered ``delay`` seconds late; returns when it was judged unhealthy."""
    tracker = HealthTracker(heartbeat_interval=INTERVAL, heartbeat_misses=3)
    tracker.track("p1", ProcessorStatus.HEALTHY, 0.0)
    if ticks:
        tracker.path_tick(0.0)  # as a new leader does (HealthWatch): no silence before it is judged
    verdicts = []
    t = 0.0
    while t <= until:
        delivered = t - delay
        sent = [b * INTERVAL for b in range(int(max(delivered, 0) // INTERVAL) + 1)]
        beats = [b for b in sent if b <= delivered and (dies_at is None or b < dies_at)]
        if beats:
            tracker.heartbeat("p1", max(beats))
        if ticks and delivered >= 0:
            tracker.path_tick(float(int(delivered)))
        verdicts += [t for c in tracker.evaluate(t) if c.new is ProcessorStatus.UNHEALTHY]
        t += 0.5
    return verdicts


def test_a_lone_processor_on_a_late_path_is_not_judged_when_the_ticks_are_as_late() -> None:
    delay = DEADLINE * 2  # every heartbeat arrives two deadlines late
    assert late_path_run(delay, ticks=False), "without ticks the late path fails the processor"
    assert late_path_run(delay, ticks=True) == []


def test_a_dead_lone_processor_is_still_judged_a_deadline_after_its_last_beat() -> None:
    verdicts = late_path_run(0.0, ticks=True, dies_at=30.0)
    last_beat = 30.0 - INTERVAL
    assert verdicts and last_beat + DEADLINE < verdicts[0] <= last_beat + DEADLINE + 1.5


def test_a_dead_processor_on_a_late_path_is_judged_once_the_path_delivered_its_silence() -> None:
    delay = 10.0
    verdicts = late_path_run(delay, ticks=True, dies_at=30.0)
    last_beat = 30.0 - INTERVAL
    assert verdicts and last_beat + DEADLINE + delay < verdicts[0] <= last_beat + DEADLINE + delay + 1.5


def test_with_ticks_a_lone_processor_tells_a_stopped_path() -> None:
    now = 100.0
    assert heartbeat_path_silent([now - 10], now, DEADLINE, path_tick=now - DEADLINE / 2 - 0.1)
    assert not heartbeat_path_silent([now - 10], now, DEADLINE, path_tick=now - 1.0), "ticks flow: not the path"
    assert not heartbeat_path_silent([now - 1.0], now, DEADLINE, path_tick=now - 10), "heartbeats flow"
    assert heartbeat_path_silent([], now, DEADLINE, path_tick=now - DEADLINE)


def test_every_processor_silent_while_the_ticks_flow_is_still_the_path() -> None:
    """The processors post to a worker that froze; the leader, another worker, ticks on."""
    beats = [10.0 - INTERVAL + 0.1, 10.0 - 1.0, 10.0]
    now = min(beats) + DEADLINE - 0.1
    assert heartbeat_path_silent(beats, now, DEADLINE, path_tick=now - 0.5)


def test_an_older_tick_never_moves_the_path_clock_back() -> None:
    tracker = HealthTracker(heartbeat_interval=INTERVAL, heartbeat_misses=3)
    tracker.path_tick(50.0)
    tracker.path_tick(40.0)
    assert tracker.path_ticked_at == 50.0
