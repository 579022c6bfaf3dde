"""Fakes and builders for driving the routing agents through Faust's test_context()."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from agents.routing import ProcessorView
from app.main import WorkerApp, create_worker_app
from core.levels import Level
from core.settings import Settings
from frame_buffer_sdk.models import FrameEvent


class Sent:
    """A fake producer for the router: records what it is handed, by topic name, and returns a
    delivery future per record. Futures resolve at once unless ``hold`` is set; held ones wait
    in ``futures`` for the test to resolve or fail."""

    def __init__(self) -> None:
        self.records: dict[str, list[dict[str, Any]]] = {}
        self.hold = False
        self.futures: list[asyncio.Future[Any]] = []
        self._seq = itertools.count()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send(self, topic: str, key: bytes, value: bytes, headers: Any = None) -> asyncio.Future[Any]:
        record = {"key": key, "value": json.loads(value or b"null"), "headers": headers, "seq": next(self._seq)}
        self.records.setdefault(topic, []).append(record)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.hold:
            self.futures.append(future)
        else:
            future.set_result(None)
        return future

    def values(self, topic_name: str) -> list[dict[str, Any]]:
        return [r["value"] for r in self.records.get(topic_name, [])]


@pytest.fixture
async def worker() -> AsyncIterator[tuple[WorkerApp, Sent]]:
    settings = Settings(
        app_id="unit-router",
        store="memory://",
        kafka_broker="kafka://127.0.0.1:1",
        captured_partitions=4,
        protected_priority=8,
    )
    sent = Sent()
    built = create_worker_app(settings, sender=sent)
    built.app.finalize()
    built.app.flow_control.resume()
    # No broker: a count snapshot is delivered as soon as it is taken (the ledger's default).
    ledger = built.orch.stats
    ledger.persist = lambda state, snap: ledger.delivered(state, snap["covered"])
    yield built, sent


def registry_record(pid: str, status: str = "healthy", last_heartbeat: float | None = None) -> dict[str, Any]:
    """A processor's registry value as fold_registry writes it (one capability, "x")."""
    beat = datetime.fromtimestamp(last_heartbeat, UTC) if last_heartbeat is not None else datetime.now(UTC)
    return {
        "id": pid,
        "capabilities": ["x"],
        "capacity": 10,
        "partitions": 1,
        "topic": f"frames.ready.{pid}",
        "consumer_group": f"processor.{pid}",
        "status": status,
        "last_heartbeat": beat.isoformat(),
        "registered_at": beat.isoformat(),
    }


def view(
    pid: str, caps: set[str], *, lag: int = 0, level: Level = Level.NORMAL, healthy: bool = True, stateful: bool = False
) -> ProcessorView:
    return ProcessorView(
        id=pid, capabilities=frozenset(caps), capacity=100, stateful=stateful, healthy=healthy, lag=lag, level=level
    )


def frame(frame_id: str, caps: list[str], camera: str = "cam-1", priority: int = 0) -> bytes:
    return (
        FrameEvent(
            frame_id=frame_id,
            camera_id=camera,
            captured_at=datetime.now(UTC),
            capabilities=caps,
            priority=priority,
            traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .model_dump_json()
        .encode()
    )


def ready(settings: Settings, pid: str) -> str:
    return settings.ready_topic(pid)
