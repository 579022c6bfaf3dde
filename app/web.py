"""The REST API of every worker (Faust web views on WEB_PORT).

Writes never touch a table directly: they publish control events that fold_registry
folds into the registry, and then wait (briefly) until the registry shows the change so
clients read their own writes. Any worker may answer: the registry is a GlobalTable.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from faust import web
from pydantic import ValidationError

from agents.backpressure import Thresholds
from agents.config import RegistryConfig
from agents.registry_fold import last_replica_leaving
from app.access import AccessPolicy, access_middleware, admin_refusal, request_role
from app.configs import registry_config, thresholds
from bridge.names import bridge_states
from core.context import Orchestrator
from core.ledger import system_totals
from core.settings import Settings
from frame_buffer_sdk.errors import FrameBufferError
from frame_buffer_sdk.kafka import ensure_topics
from frame_buffer_sdk.kafka_security import KafkaSecurity
from frame_buffer_sdk.keys import backpressure_key
from frame_buffer_sdk.models import (
    PROCESSOR_ID_RE,
    ControlEvent,
    ProcessorRecord,
    ProcessorSpec,
    ProcessorStatus,
    utcnow,
)
from frame_buffer_sdk.names import find_collision

log = logging.getLogger(__name__)
READ_YOUR_WRITE_SECONDS = 10.0
# Below the SDK's 10 s request timeout, so a slow fold never fails the draining heartbeat.
DRAINING_WAIT_SECONDS = 5.0
HEARTBEAT_STATUSES = frozenset({ProcessorStatus.HEALTHY.value, ProcessorStatus.DRAINING.value})


@dataclass(frozen=True, slots=True)
class WebConfig:
    """What the REST API, the backpressure report and the stats views read."""

    app_id: str
    bootstrap_servers: str
    kafka_security: KafkaSecurity
    topic_replication_factor: int
    processor_partitions: int
    processor_max_partitions: int
    protected_priority: int
    access: AccessPolicy
    thresholds: Thresholds
    registry: RegistryConfig

    @classmethod
    def from_settings(cls, settings: Settings) -> WebConfig:
        return cls(
            app_id=settings.app_id,
            bootstrap_servers=settings.bootstrap_servers,
            kafka_security=settings.kafka_security,
            topic_replication_factor=settings.topic_replication_factor,
            processor_partitions=settings.processor_partitions,
            processor_max_partitions=settings.processor_max_partitions,
            protected_priority=settings.protected_priority,
            access=AccessPolicy.from_settings(settings),
            thresholds=thresholds(settings),
            registry=registry_config(settings),
        )


class BodyError(FrameBufferError):
    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__(errors)
        self.errors = errors


def validation_errors(exc: ValidationError) -> list[dict[str, str]]:
    return [{"field": ".".join(str(p) for p in err["loc"]) or "body", "message": err["msg"]} for err in exc.errors()]


async def read_json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read() or b"null")
    except ValueError as exc:
        raise BodyError([{"field": "body", "message": f"not valid JSON: {exc}"}]) from None
    except RecursionError:
        raise BodyError([{"field": "body", "message": "JSON nested too deeply"}]) from None
    if not isinstance(body, dict):
        raise BodyError([{"field": "body", "message": "expected a JSON object"}])
    return body


def same_spec(spec: ProcessorSpec, record: dict[str, Any]) -> bool:
    """Whether registering ``spec`` again would leave ``record``'s spec as it is."""
    # Compared as stored (JSON), not re-validated: a record from before a bound was added must not fail here.
    wanted = spec.model_dump(mode="json", exclude={"partitions"})
    unchanged = all(record.get(name) == value for name, value in wanted.items())
    return unchanged and spec.partitions in (None, record.get("partitions"))


def replica_of(request: web.Request) -> str | None:
    """The ``?replica=`` of a register or deregister: which replica of the id is speaking."""
    replica = request.query.get("replica") or None
    if replica is not None and len(replica) > 256:
        raise BodyError([{"field": "replica", "message": "at most 256 characters"}])
    return replica


def processor_json(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "topic": record["topic"], "consumer_group": record["consumer_group"]}


def register_web(orch: Orchestrator, config: WebConfig) -> None:
    app, tables, topics = orch.app, orch.tables, orch.topics

    # Faust's production index also claims "/", which is the dashboard's. Its table,
    # router and stats views stay available under their prefixes.
    app.web.blueprints._enabled = [
        (prefix, bp) for prefix, bp in app.web.blueprints._enabled if "production_index" not in str(bp)
    ]

    policy = config.access
    # The aiohttp driver's own application: Faust has no hook for middlewares.
    cast(Any, app.web).web_app.middlewares.append(access_middleware(policy))
    if policy.api_token is None:
        log.warning("API_TOKEN is not set: the REST API takes writes from loopback clients only")

    async def publish(event: ControlEvent) -> None:
        await topics.control.send(key=event.processor_id.encode(), value=event.model_dump_json().encode())

    async def wait_registry(pid: str, done: Any, within: float = READ_YOUR_WRITE_SECONDS) -> dict[str, Any] | None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            current = tables.registry.get(pid)
            if done(current):
                return current  # type: ignore[no-any-return]
            await asyncio.sleep(0.05)
        return tables.registry.get(pid)  # type: ignore[no-any-return]

    def unprocessable(view: web.View, errors: list[dict[str, str]]) -> web.Response:
        return view.json({"detail": "invalid request body", "errors": errors}, status=422)

    async def upsert(view: web.View, request: web.Request, kind: str, path_id: str | None) -> web.Response:
        try:
            body = await read_json_object(request)
            if path_id is not None:
                body.setdefault("id", path_id)
                if body["id"] != path_id:
                    raise BodyError([{"field": "id", "message": "must match the id in the path"}])
            spec = ProcessorSpec.model_validate(body)
            replica = replica_of(request)
        except BodyError as exc:
            return unprocessable(view, exc.errors)
        except ValidationError as exc:
            return unprocessable(view, validation_errors(exc))
        if spec.partitions is not None and spec.partitions > config.processor_max_partitions:
            message = f"at most {config.processor_max_partitions} (PROCESSOR_MAX_PARTITIONS)"
            return unprocessable(view, [{"field": "partitions", "message": message}])
        existing = tables.registry.get(spec.id)
        if kind == "update" and existing is None:
            return view.json({"detail": f"processor {spec.id!r} is not registered"}, status=404)
        if kind == "register" and existing is not None:
            restart = existing.get("status") != ProcessorStatus.HEALTHY.value or same_spec(spec, existing)
            refusal = admin_refusal(policy, request_role(request), own_move=restart)
            if refusal is not None:
                return view.json({"detail": refusal.detail}, status=refusal.status)
        topic = config.registry.names.ready_topic(spec.id)
        clash = find_collision(topic, {pid: r["topic"] for pid, r in tables.registry.items() if r and pid != spec.id})
        if clash is not None:
            detail = f"topic {topic!r} collides with processor {clash!r}'s ('.' and '_' are one to Kafka)"
            return view.json({"detail": detail, "errors": [{"field": "id", "message": detail}]}, status=409)
        partitions = spec.partitions or (existing or {}).get("partitions") or config.processor_partitions
        await ensure_topics(
            config.bootstrap_servers,
            [(topic, partitions)],
            config.topic_replication_factor,
            security=config.kafka_security,
        )
        event = ControlEvent(kind=kind, processor_id=spec.id, spec=spec, replica=replica)  # type: ignore[arg-type]
        await publish(event)
        stamp = event.at
        record = await wait_registry(
            spec.id, lambda r: r is not None and datetime.fromisoformat(r["last_heartbeat"]) >= stamp
        )
        if record is None:
            return view.json({"detail": "registration not confirmed in time; retry"}, status=503)
        status = 201 if (existing is None and kind == "register") else 200
        return view.json(processor_json(record), status=status)

    @app.page("/api/v1/processors/register")
    class RegisterProcessor(web.View):
        async def post(self, request: web.Request) -> web.Response:
            return await upsert(self, request, "register", None)

    @app.page("/api/v1/processors/heartbeat")
    class ProcessorHeartbeat(web.View):
        async def post(self, request: web.Request) -> web.Response:
            try:
                body = await read_json_object(request)
            except BodyError as exc:
                return unprocessable(self, exc.errors)
            pid = body.get("processor_id")
            status = body.get("status", "healthy")
            replica = body.get("replica")
            errors = []
            if not isinstance(pid, str) or not PROCESSOR_ID_RE.match(pid):
                errors.append({"field": "processor_id", "message": "required: a registered processor id"})
            if replica is not None and (not isinstance(replica, str) or not 0 < len(replica) <= 256):
                errors.append({"field": "replica", "message": "string of 1-256 characters"})
            # The other statuses are the health monitor's verdicts, never a processor's claim.
            if status not in HEARTBEAT_STATUSES:
                errors.append({"field": "status", "message": f"one of {sorted(HEARTBEAT_STATUSES)}"})
            if errors or not isinstance(pid, str):
                return unprocessable(self, errors)
            current = tables.registry.get(pid)
            if current is None:
                return self.json({"detail": f"processor {pid!r} is not registered"}, status=404)
            record = ProcessorRecord.model_validate(current)
            # One replica draining while siblings carry on must not stop routing to the id.
            draining = status == ProcessorStatus.DRAINING.value and last_replica_leaving(
                record, replica, utcnow(), config.registry
            )
            if draining:
                await publish(
                    ControlEvent(
                        kind="status", processor_id=pid, status=ProcessorStatus.DRAINING, reason="processor draining"
                    )
                )
            await publish(
                ControlEvent(kind="heartbeat", processor_id=pid, status=ProcessorStatus(status), replica=replica)
            )
            if draining:
                # The SDK deregisters right after this answer; with ADMIN_TOKEN set its DELETE is
                # allowed only once the registry shows it draining.
                await wait_registry(pid, lambda r: r is None or r.get("status") == status, DRAINING_WAIT_SECONDS)
            return self.json({"processor_id": pid, "accepted": True})

    @app.page("/api/v1/processors/search/")
    class SearchProcessors(web.View):
        async def get(self, request: web.Request) -> web.Response:
            capability = request.query.get("capability")
            if not capability:
                return unprocessable(self, [{"field": "capability", "message": "query parameter required"}])
            found = [
                processor_json(r) for r in tables.registry.values() if r and capability in r.get("capabilities", [])
            ]
            return self.json(sorted(found, key=lambda r: r["id"]))

    @app.page("/api/v1/processors/")
    class ListProcessors(web.View):
        async def get(self, request: web.Request) -> web.Response:
            return self.json(sorted((processor_json(r) for r in tables.registry.values() if r), key=lambda r: r["id"]))

    @app.page("/api/v1/processors/{processor_id}")
    class OneProcessor(web.View):
        async def get(self, request: web.Request, processor_id: str) -> web.Response:
            record = tables.registry.get(processor_id)
            if record is None:
                return self.json({"detail": f"processor {processor_id!r} is not registered"}, status=404)
            return self.json(processor_json(record))

        async def put(self, request: web.Request, processor_id: str) -> web.Response:
            refusal = admin_refusal(policy, request_role(request))
            if refusal is not None:
                return self.json({"detail": refusal.detail}, status=refusal.status)
            return await upsert(self, request, "update", processor_id)

        async def delete(self, request: web.Request, processor_id: str) -> web.Response:
            record = tables.registry.get(processor_id)
            leaving = record is not None and record.get("status") == ProcessorStatus.DRAINING.value
            refusal = admin_refusal(policy, request_role(request), own_move=leaving)
            if refusal is not None:
                return self.json({"detail": refusal.detail}, status=refusal.status)
            if record is None:
                return self.json({"detail": f"processor {processor_id!r} is not registered"}, status=404)
            try:
                replica = replica_of(request)
            except BodyError as exc:
                return unprocessable(self, exc.errors)
            await publish(ControlEvent(kind="deregister", processor_id=processor_id, replica=replica))

            def applied(r: dict[str, Any] | None) -> bool:
                return r is None or (replica is not None and replica not in r.get("replicas", {}))

            if not applied(await wait_registry(processor_id, applied)):
                # On the control topic, so it will apply; 204 would claim reads show it already.
                detail = "deregistration accepted; the registry has not applied it yet"
                return self.json({"detail": detail}, status=202)
            return self.bytes(b"", status=204)

    @app.page("/api/v1/frames/stats")
    class FrameStats(web.View):
        async def get(self, request: web.Request) -> web.Response:
            return self.json(frame_stats(orch))

    @app.page("/api/v1/backpressure")
    class Backpressure(web.View):
        async def get(self, request: web.Request) -> web.Response:
            return self.json(await backpressure_report(orch, config))

    @app.page("/api/v1/cameras/{camera_id}")
    class Camera(web.View):
        @app.table_route(table=tables.affinity, match_info="camera_id")  # type: ignore[arg-type]
        async def get(self, request: web.Request, camera_id: str) -> web.Response:
            stats = frame_stats(orch)
            return self.json(
                {
                    "camera_id": camera_id,
                    "affinity": dict(tables.affinity.get(camera_id) or {}),
                    "shed": stats["shed_by_camera"].get(camera_id, 0),
                    "answered_by": orch.boot_id,
                }
            )


def frame_stats(orch: Orchestrator) -> dict[str, Any]:
    # This worker's own snapshots too: fresher than what it published last.
    totals = system_totals([*orch.tables.worker_stats.values(), {"sources": orch.stats.snapshots()}])
    processors = {
        pid: {
            "routed": totals["routed_by_processor"].get(pid, 0),
            "processed": totals["processed_by_processor"].get(pid, 0),
            "dead_lettered": totals["dead_lettered_by_processor"].get(pid, 0),
        }
        for pid in sorted(
            set(totals["routed_by_processor"])
            | set(totals["processed_by_processor"])
            | set(totals["dead_lettered_by_processor"])
        )
    }
    return {**totals, "processors": processors, "at": datetime.now(UTC).isoformat()}


async def backpressure_report(orch: Orchestrator, config: WebConfig) -> dict[str, Any]:
    processors: dict[str, Any] = {}
    for pid, raw in orch.tables.registry.items():
        if not raw:
            continue
        rec = ProcessorRecord.model_validate(raw)
        load = orch.tables.load.get(pid) or {}
        processors[pid] = {
            "level": load.get("level", "NORMAL"),
            "utilisation": load.get("utilisation", 0.0),
            "lag": load.get("lag", 0),
            "capacity": rec.capacity,
            "partitions": load.get("partitions", {}),
            "status": rec.status.value,
            "status_reason": rec.status_reason,
            "capabilities": rec.capabilities,
            "stateful": rec.stateful,
            "last_heartbeat": rec.last_heartbeat.isoformat(),
        }
    stats = frame_stats(orch)
    router: dict[str, Any] = {"level": "NORMAL", "lag": 0, "partitions": {}}
    bridges: list[dict[str, Any]] = []
    try:
        raw_router = await orch.redis.get(backpressure_key(config.app_id))
        if raw_router:
            data = json.loads(raw_router)
            router = {"level": data.get("level"), "lag": data.get("router_lag"), "partitions": data.get("partitions")}
        bridges = await bridge_states(orch.redis, config.app_id)
    except Exception as exc:  # the report still answers without Redis, saying so
        router["error"] = f"redis unavailable: {exc}"
    return {
        "router": router,
        "processors": processors,
        "shed": {"by_camera": stats["shed_by_camera"], "by_reason": stats["shed_by_reason"], "total": stats["shed"]},
        "dead_lettered": stats["dead_lettered"],
        "bridges": sorted(bridges, key=lambda b: str(b.get("consumer"))),
        "thresholds": {
            "elevated": config.thresholds.elevated,
            "high": config.thresholds.high,
            "critical": config.thresholds.critical,
            "hysteresis": config.thresholds.hysteresis,
            "protected_priority": config.protected_priority,
        },
    }
