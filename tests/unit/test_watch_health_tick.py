"""The leader's tick through the heartbeat path: sent every sample, read back from the
heartbeat_path table, and the clock a lone processor's silence is measured up to."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any
from unittest import mock

from agents.path_tick import TABLE_KEY, TICK_KEY, fold_tick, tick_record
from agents.routing import Router
from agents.watch_health import HealthWatch
from app.configs import health_watch_config
from app.main import create_worker_app
from core.settings import Settings
from frame_buffer_sdk.models import ControlEvent, ProcessorStatus
from tests.unit.router_fakes import Sent, registry_record

SETTINGS = Settings(heartbeat_interval=5.0, heartbeat_misses=3)  # a 15 s deadline


def leader(now: float, heartbeat_age: float, tick_age: float | None) -> tuple[HealthWatch, Any]:
    """A leader that took the lead a minute ago, one lone processor, and the newest tick back."""
    orch = mock.MagicMock()
    orch.boot_id = "w-1"
    orch.topics.control.send = mock.AsyncMock()
    orch.topics.load_reports.send = mock.AsyncMock()
    orch.redis.set = mock.AsyncMock()
    with mock.patch("agents.watch_health.time.time", return_value=now - 60):
        watch = HealthWatch(orch, Router(), health_watch_config(SETTINGS))
    watch.sampler = mock.MagicMock(sample=mock.AsyncMock(return_value={}))
    orch.tables.registry.items.return_value = [("p1", registry_record("p1", last_heartbeat=now - heartbeat_age))]
    tick = None if tick_age is None else fold_tick(tick_record(now - tick_age, "w-1"))
    orch.tables.heartbeat_path.get.side_effect = lambda key: tick if key == TABLE_KEY else None
    return watch, orch


def statuses(orch: Any) -> list[ControlEvent]:
    events = [c.kwargs for c in orch.topics.control.send.call_args_list if c.kwargs["key"] != TICK_KEY]
    return [ControlEvent.model_validate_json(e["value"]) for e in events]


async def test_every_sample_sends_a_tick_on_the_control_topic() -> None:
    now = time.time()
    watch, orch = leader(now, heartbeat_age=1.0, tick_age=0.5)
    await watch.tick()
    ticks = [c.kwargs for c in orch.topics.control.send.call_args_list if c.kwargs["key"] == TICK_KEY]
    assert len(ticks) == 1 and json.loads(ticks[0]["value"])["leader"] == "w-1"
    assert abs(datetime.fromisoformat(json.loads(ticks[0]["value"])["at"]).timestamp() - now) < 5


async def test_a_lone_processor_on_a_late_path_is_measured_up_to_the_tick() -> None:
    now = time.time()
    # Its last heartbeat is 19 s old (past the 15 s deadline), but the path is 6 s late.
    watch, orch = leader(now, heartbeat_age=19.0, tick_age=6.0)
    await watch.tick()
    assert statuses(orch) == []
    assert watch.health.status("p1") is ProcessorStatus.HEALTHY


async def test_a_lone_processor_on_a_stopped_path_is_not_judged() -> None:
    now = time.time()
    watch, orch = leader(now, heartbeat_age=20.0, tick_age=20.0)
    await watch.tick()
    assert statuses(orch) == [] and watch.quiet_until > now


async def test_a_dead_lone_processor_is_judged_while_the_ticks_come_back() -> None:
    now = time.time()
    watch, orch = leader(now, heartbeat_age=19.0, tick_age=0.5)
    await watch.tick()
    assert [(e.processor_id, e.status) for e in statuses(orch)] == [("p1", ProcessorStatus.UNHEALTHY)]


async def test_the_registry_fold_folds_a_tick_into_the_heartbeat_path_table() -> None:
    settings = Settings(app_id="unit-tick", store="memory://", kafka_broker="kafka://127.0.0.1:1")
    built = create_worker_app(settings, sender=Sent())
    built.app.finalize()
    built.app.flow_control.resume()
    sent_at = time.time() - 3.0
    async with built.app.agents["fold_registry"].test_context() as fold:
        await fold.put(tick_record(sent_at, "w-1"), key=TICK_KEY)
    folded = built.orch.tables.heartbeat_path[TABLE_KEY]
    assert folded["leader"] == "w-1"
    assert abs(datetime.fromisoformat(folded["at"]).timestamp() - sent_at) < 1e-3
    assert list(built.orch.tables.registry.items()) == [], "a tick is no processor"
