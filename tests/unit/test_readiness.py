"""Readiness rules: a routing stage that holds events without finishing one is stuck; a crashed
agent is not alive."""

from __future__ import annotations

import asyncio
from typing import Any

import faust
import pytest

from agents.progress import ProgressWatch
from app.readiness import agent_alive, verdict


def test_a_stage_holding_events_without_finishing_one_is_stuck_for_that_long() -> None:
    watch = ProgressWatch()
    assert watch.stuck_for(100.0) == 0.0
    watch.entered(10.0)
    assert watch.stuck_for(40.0) == 30.0
    watch.entered(11.0)
    watch.left(50.0)  # one finished: progress, the other is timed from here
    assert watch.stuck_for(55.0) == 5.0
    watch.left(56.0)
    assert watch.stuck_for(1_000.0) == 0.0, "idle is not stuck"


def test_the_verdict_needs_every_check_and_a_moving_router() -> None:
    good = {"redis": True, "kafka": True, "recovered": True, "partitions_assigned": 2, "routing_alive": True}
    assert verdict(good, 0.0, 30.0)
    assert not verdict(good, 30.0, 30.0)
    for name in good:
        assert not verdict({**good, name: 0 if name == "partitions_assigned" else False}, 0.0, 30.0), name


@pytest.fixture
def app() -> faust.App:
    return faust.App("readiness-test", store="memory://", web_enabled=False)


async def test_an_agent_is_alive_while_it_runs_and_not_once_it_crashed(app: faust.App) -> None:
    topic = app.topic("frames", value_serializer="raw")

    @app.agent(topic)
    async def route(stream: Any) -> None:
        async for value in stream:
            if value == b"boom":
                raise RuntimeError("routing bug")

    assert not agent_alive(route), "not started"
    async with route.test_context() as agent:
        assert agent_alive(agent)
        await agent.put(b"fine")
        assert agent_alive(agent)
        with pytest.raises(RuntimeError):
            await agent.put(b"boom")
            await asyncio.sleep(0.1)
        assert not agent_alive(agent)
