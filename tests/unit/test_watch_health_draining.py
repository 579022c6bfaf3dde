"""A new leader that first saw a processor draining judges it again once its draining ended."""

from __future__ import annotations

import json
from unittest import mock

from agents.routing import Router
from agents.watch_health import HealthWatch
from app.configs import health_watch_config
from core.settings import Settings
from frame_buffer_sdk.models import ProcessorStatus
from tests.unit.router_fakes import registry_record


async def test_draining_seen_first_does_not_stick_once_the_registry_says_healthy() -> None:
    orch = mock.MagicMock()
    orch.topics.control.send = mock.AsyncMock()
    orch.topics.load_reports.send = mock.AsyncMock()
    orch.redis.set = mock.AsyncMock()
    watch = HealthWatch(orch, Router(), health_watch_config(Settings()))
    watch.sampler = mock.MagicMock(sample=mock.AsyncMock(return_value={}))

    def reported_status() -> str:
        value = orch.topics.load_reports.send.call_args.kwargs["value"]
        return str(json.loads(value)["status"])

    orch.tables.registry.items.return_value = [("p1", registry_record("p1", ProcessorStatus.DRAINING.value))]
    await watch.tick()
    assert reported_status() == "draining"
    # The processor's healthy heartbeat ended its draining in the registry (agents.registry_fold).
    orch.tables.registry.items.return_value = [("p1", registry_record("p1", ProcessorStatus.HEALTHY.value))]
    await watch.tick()
    assert reported_status() == "healthy"
