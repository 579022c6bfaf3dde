"""Leader-only gauges: a worker that stops being leader removes its series."""

from __future__ import annotations

from typing import Any
from unittest import mock

from prometheus_client import REGISTRY

from agents.routing import Router
from agents.watch_health import LEADER_GAUGES, LeaderWatch, clear_leader_gauges
from app.configs import health_watch_config
from core.metrics import BACKPRESSURE_LEVEL, PROCESSOR_HEALTHY, QUEUE_DEPTH, ROUTER_LAG
from core.settings import Settings


def _series() -> dict[str, int]:
    return {gauge._name: sum(len(m.samples) for m in gauge.collect()) for gauge in LEADER_GAUGES}


class FakeWatch:
    """Sets the gauges the way HealthWatch.tick does, without Kafka."""

    def __init__(self, *_: Any) -> None:
        self.ticks = 0
        self.held = 0
        self.closed = False

    async def tick(self) -> None:
        self.ticks += 1
        QUEUE_DEPTH.labels("p1").set(5)
        BACKPRESSURE_LEVEL.labels("p1").set(1)
        PROCESSOR_HEALTHY.labels("p1").set(1)
        ROUTER_LAG.labels("0").set(7)

    def hold_verdicts(self) -> None:
        self.held += 1

    async def close(self) -> None:
        self.closed = True


def leader_watch() -> tuple[LeaderWatch, mock.MagicMock]:
    orch = mock.MagicMock()
    return LeaderWatch(orch, Router(), health_watch_config(Settings()), make=FakeWatch), orch.app  # type: ignore[arg-type]


async def test_the_leader_sets_the_gauges_and_removes_them_when_leadership_moves() -> None:
    clear_leader_gauges()
    leader, app = leader_watch()
    app.is_leader.return_value = True
    await leader.tick()
    watch = leader.watch
    assert isinstance(watch, FakeWatch) and watch.ticks == 1
    assert REGISTRY.get_sample_value("frame_buffer_queue_depth_frames", {"processor_id": "p1"}) == 5
    assert REGISTRY.get_sample_value("frame_buffer_router_lag_frames", {"partition": "0"}) == 7
    app.is_leader.return_value = False
    await leader.tick()
    assert leader.watch is None and watch.closed and watch.ticks == 1
    assert _series() == dict.fromkeys(_series(), 0)
    assert REGISTRY.get_sample_value("frame_buffer_queue_depth_frames", {"processor_id": "p1"}) is None
    # Leader again: a fresh watch, the series come back.
    app.is_leader.return_value = True
    await leader.tick()
    assert (
        leader.watch is not watch
        and REGISTRY.get_sample_value("frame_buffer_router_lag_frames", {"partition": "0"}) == 7
    )


async def test_a_rebalance_that_moves_leadership_away_clears_at_once() -> None:
    clear_leader_gauges()
    leader, app = leader_watch()
    app.is_leader.return_value = True
    await leader.tick()
    watch = leader.watch
    assert isinstance(watch, FakeWatch)
    await leader.rebalanced()  # still leader: verdicts held, gauges kept
    assert watch.held == 1 and leader.watch is watch
    assert REGISTRY.get_sample_value("frame_buffer_processor_healthy", {"processor_id": "p1"}) == 1
    app.is_leader.return_value = False
    await leader.rebalanced()
    assert leader.watch is None and watch.closed
    assert REGISTRY.get_sample_value("frame_buffer_processor_healthy", {"processor_id": "p1"}) is None


async def test_a_worker_that_never_led_leaves_others_series_alone() -> None:
    leader, app = leader_watch()
    app.is_leader.return_value = False
    ROUTER_LAG.labels("3").set(1)  # e.g. set by a test of this process standing in for a leader
    await leader.tick()
    await leader.step_down()
    assert leader.watch is None
    assert REGISTRY.get_sample_value("frame_buffer_router_lag_frames", {"partition": "3"}) == 1
    clear_leader_gauges()
