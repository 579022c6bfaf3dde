"""Liveness and readiness of a worker: /live, /ready, and /health (the same as /ready).

/live answers whenever the process can serve a request: restart it only when this fails.
/ready says whether the worker does its job: Redis and the broker answer a real round trip,
its tables are recovered, it has partitions, and its routing agent is alive and not stuck.
Take it out of rotation (and alert) when this fails; restarting will not fix a dead broker.

A routing agent is stuck when an event of the captured topic has been in its hands for
``routing_stuck_seconds`` with no event finished meanwhile. A protected frame held while every
processor is full counts too: the worker routes nothing then, and that is worth seeing.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import faust
from aiokafka.client import AIOKafkaClient
from faust import web

from agents.progress import ProgressWatch
from core.context import Orchestrator
from frame_buffer_sdk.kafka_security import PLAINTEXT, KafkaSecurity

PROBE_TIMEOUT_SECONDS = 2.0


def agent_alive(agent: Any) -> bool:
    """True while at least one actor of the agent runs (a crashed one waits for its supervisor)."""
    # Faust keeps an agent's actors in ``_actors``; there is no public view of them.
    for actor in list(getattr(agent, "_actors", ())):
        task = getattr(actor, "actor_task", None)
        if task is not None and not task.done() and not actor.crashed:
            return True
    return False


class BrokerProbe:
    """One metadata round trip to the brokers per check, over a client kept for it."""

    def __init__(self, bootstrap_servers: str, client_id: str, security: KafkaSecurity = PLAINTEXT) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.client_id = client_id
        self.security = security
        self._client: AIOKafkaClient | None = None

    async def check(self) -> str:
        """Empty when a broker answered within PROBE_TIMEOUT_SECONDS, else why not."""
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
                if self._client is None:
                    client = AIOKafkaClient(
                        bootstrap_servers=self.bootstrap_servers,
                        client_id=self.client_id,
                        **self.security.client_kwargs(),
                    )
                    try:
                        await client.bootstrap()
                    except BaseException:
                        await client.close()
                        raise
                    self._client = client
                await self._client.fetch_all_metadata()
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return ""

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def verdict(checks: dict[str, Any], stuck_for: float, stuck_after: float) -> bool:
    """Ready when every check holds and the routing agent moved within ``stuck_after``."""
    return bool(
        checks["redis"]
        and checks["kafka"]
        and checks["recovered"]
        and checks["partitions_assigned"]
        and checks["routing_alive"]
        and stuck_for < stuck_after
    )


class Readiness:
    """What /ready reports, for one worker."""

    def __init__(
        self, orch: Orchestrator, routing_agent: Any, progress: ProgressWatch, stuck_after: float, probe: BrokerProbe
    ) -> None:
        self.orch = orch
        self.routing_agent = routing_agent
        self.progress = progress
        self.stuck_after = stuck_after
        self.probe = probe

    async def report(self) -> dict[str, Any]:
        app: faust.App = self.orch.app
        checks: dict[str, Any] = {}
        try:
            checks["redis"] = bool(await asyncio.wait_for(self.orch.redis.ping(), timeout=PROBE_TIMEOUT_SECONDS))
        except Exception as exc:
            checks["redis"] = False
            checks["redis_error"] = str(exc)
        broker_error = await self.probe.check()
        checks["kafka"] = not broker_error
        if broker_error:
            checks["kafka_error"] = broker_error
        consumer = app.consumer if app.started else None
        assignment = consumer.assignment() if consumer is not None else set()
        checks["partitions_assigned"] = len(assignment)
        recovery = getattr(app.tables, "recovery", None)
        checks["recovered"] = bool(app.started and recovery is not None and recovery.completed.is_set())
        checks["routing_alive"] = agent_alive(self.routing_agent)
        stuck_for = self.progress.stuck_for(time.monotonic())
        checks["routing_stuck_seconds"] = round(stuck_for, 1)
        checks["ready"] = verdict(checks, stuck_for, self.stuck_after)
        checks["boot_id"] = self.orch.boot_id
        return checks


def register_health_views(
    orch: Orchestrator, routing_agent: Any, progress: ProgressWatch, stuck_after: float, probe: BrokerProbe
) -> Readiness:
    """/live, /ready and /health on the worker's web server. ``progress`` is fed by the routing
    agent itself: its stream acks by hand, so Faust's per-event sensor hooks never see an event
    leave it."""
    app = orch.app
    readiness = Readiness(orch, routing_agent, progress, stuck_after, probe)

    @app.page("/live")
    class Live(web.View):
        async def get(self, request: web.Request) -> web.Response:
            return self.json({"live": True, "boot_id": orch.boot_id})

    async def ready_response(view: web.View) -> web.Response:
        report = await readiness.report()
        return view.json(report, status=200 if report["ready"] else 503)

    @app.page("/ready")
    class Ready(web.View):
        async def get(self, request: web.Request) -> web.Response:
            return await ready_response(self)

    @app.page("/health")
    class Health(web.View):
        async def get(self, request: web.Request) -> web.Response:
            return await ready_response(self)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def close_probe(_: object, **kwargs: object) -> None:
        await readiness.probe.close()

    return readiness
