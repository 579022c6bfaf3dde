"""A processor stopped while it registers (a pod's SIGTERM right after its start) leaves as any
replica does: the orchestrator may hold it already. Against a local HTTP stand-in of the
processor REST contract; no Kafka is reached, since the stop comes before consuming."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from devtools.devstack import free_port
from frame_buffer_sdk import Frame, ProcessorClient
from frame_buffer_sdk.settings import ProcessorSettings

Answer = Callable[[web.Request], Awaitable[web.Response]]


class _Orchestrator:
    def __init__(self, register: Answer) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.register_seen = asyncio.Event()
        self._register = register
        self.url = ""

    async def on_register(self, request: web.Request) -> web.Response:
        self.calls.append(("register", request.query.get("replica")))
        self.register_seen.set()
        return await self._register(request)

    async def on_heartbeat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.calls.append(("heartbeat", body["status"]))
        return web.json_response({"processor_id": body["processor_id"], "accepted": True})

    async def on_delete(self, request: web.Request) -> web.Response:
        self.calls.append(("delete", request.query.get("replica")))
        return web.Response(status=204)


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Answer], Awaitable[_Orchestrator]]]:
    runners: list[web.AppRunner] = []

    async def start(register: Answer) -> _Orchestrator:
        orch = _Orchestrator(register)
        app = web.Application()
        app.router.add_post("/api/v1/processors/register", orch.on_register)
        app.router.add_post("/api/v1/processors/heartbeat", orch.on_heartbeat)
        app.router.add_delete("/api/v1/processors/{pid}", orch.on_delete)
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        orch.url = f"http://127.0.0.1:{port}"
        return orch

    yield start
    for runner in runners:
        await runner.cleanup()


async def _nothing(frame: Frame) -> dict[str, Any]:
    return {}


def _client(url: str) -> ProcessorClient:
    settings = ProcessorSettings(orchestrator_url=url)
    return ProcessorClient(settings, "det", ["motion"], _nothing, replica="r-1")


async def test_stop_while_the_registration_is_answered_still_deregisters(
    serve: Callable[[Answer], Awaitable[_Orchestrator]],
) -> None:
    async def slow_yes(request: web.Request) -> web.Response:
        await asyncio.sleep(0.5)  # registered on the server; the answer is still on its way
        body = await request.json()
        return web.json_response({**body, "topic": "t", "consumer_group": "g", "status": "healthy"}, status=201)

    orch = await serve(slow_yes)
    client = _client(orch.url)
    run = asyncio.create_task(client.run())
    await asyncio.wait_for(orch.register_seen.wait(), 10)
    client.request_stop()
    await asyncio.wait_for(run, 10)

    assert orch.calls == [("register", "r-1"), ("heartbeat", "draining"), ("delete", "r-1")]
    assert client.record is not None and client.topic == "t", "the answer in flight was read, not cut off"


async def test_stop_while_the_registration_is_retried_ends_the_retries_and_leaves(
    serve: Callable[[Answer], Awaitable[_Orchestrator]],
) -> None:
    async def not_yet(request: web.Request) -> web.Response:
        # The worker's answer when the fold lags: the event may still register later.
        return web.json_response({"detail": "registration not confirmed in time; retry"}, status=503)

    orch = await serve(not_yet)
    client = _client(orch.url)
    run = asyncio.create_task(client.run())
    await asyncio.wait_for(orch.register_seen.wait(), 10)
    await asyncio.sleep(0.05)  # inside tenacity's pause before the next attempt
    asked = time.monotonic()
    client.request_stop()
    await asyncio.wait_for(run, 10)

    assert time.monotonic() - asked < 2, "the pause before the next attempt was not cut short"
    registers = [c for c in orch.calls if c[0] == "register"]
    assert orch.calls == [*registers, ("heartbeat", "draining"), ("delete", "r-1")]
    assert client.record is None
