"""The REST API of a real worker (issue 3 §6; issue 5 §2-3): paths processors already use."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agents.worker_timers import VIEW_REFRESH_SECONDS
from app.kafka import ensure_topics
from tests.integration.cluster import Cluster, http_json, produce_frames, read_topic, wait_ready, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
async def worker_url(make_settings: Any, tmp_path: Path) -> AsyncIterator[tuple[Cluster, str]]:
    cluster = Cluster(make_settings(heartbeat_interval=1.0), tmp_path / "logs")
    worker, url = cluster.worker("worker-1")
    try:
        await wait_ready(url, proc=worker)
        yield cluster, url
    finally:
        cluster.close()


async def test_processor_lifecycle_over_rest(worker_url: tuple[Cluster, str]) -> None:
    cluster, url = worker_url
    settings = cluster.settings
    api = f"{url}/api/v1/processors"
    spec = {"id": "yolo-v8", "capabilities": ["object_detection", "person"], "capacity": 64, "partitions": 3}

    status, body = await http_json("POST", f"{api}/register", spec)
    assert status == 201, body
    assert body["topic"] == settings.ready_topic("yolo-v8")
    assert body["consumer_group"] == f"{settings.processor_group_prefix}yolo-v8"
    assert body["id"] == "yolo-v8" and body["partitions"] == 3 and body["status"] == "healthy"

    # Re-registering (a restarted processor) is never refused: 200, updated in place.
    status, again = await http_json("POST", f"{api}/register", {**spec, "capacity": 128})
    assert status == 200 and again["capacity"] == 128 and again["registered_at"] == body["registered_at"]

    status, listed = await http_json("GET", f"{api}/")
    assert status == 200 and [p["id"] for p in listed] == ["yolo-v8"]
    status, one = await http_json("GET", f"{api}/yolo-v8")
    assert status == 200 and one["capacity"] == 128
    status, found = await http_json("GET", f"{api}/search/?capability=person")
    assert status == 200 and [p["id"] for p in found] == ["yolo-v8"]
    status, found = await http_json("GET", f"{api}/search/?capability=ocr")
    assert status == 200 and found == []

    status, updated = await http_json("PUT", f"{api}/yolo-v8", {"capabilities": ["object_detection"], "capacity": 10})
    assert status == 200 and updated["capabilities"] == ["object_detection"] and updated["capacity"] == 10

    status, hb = await http_json("POST", f"{api}/heartbeat", {"processor_id": "yolo-v8", "status": "healthy"})
    assert status == 200 and hb["accepted"] is True
    status, _ = await http_json("POST", f"{api}/heartbeat", {"processor_id": "ghost", "status": "healthy"})
    assert status == 404

    status, _ = await http_json("DELETE", f"{api}/yolo-v8")
    assert status == 204
    status, _ = await http_json("DELETE", f"{api}/yolo-v8")
    assert status == 404
    status, _ = await http_json("GET", f"{api}/yolo-v8")
    assert status == 404

    # Every change went through the control topic, where the registry is folded from.
    events = await read_topic(settings, settings.control_topic, idle_seconds=1, max_seconds=10)
    assert [e["kind"] for e in events if e["processor_id"] == "yolo-v8"][:3] == ["register", "register", "update"]


INVALID_BODIES: list[tuple[Any, str]] = [
    ({"capabilities": ["x"]}, "id"),
    ({"id": "bad id!", "capabilities": ["x"]}, "id"),
    ({"id": "p1", "capabilities": []}, "capabilities"),
    ({"id": "p1", "capabilities": ["x"], "capacity": 0}, "capacity"),
    ({"id": "p1", "capabilities": ["x"], "surprise": 1}, "surprise"),
    ("not an object", "body"),
]


async def test_invalid_bodies_are_422_naming_the_field(worker_url: tuple[Cluster, str]) -> None:
    _, url = worker_url
    for body, field in INVALID_BODIES:
        status, reply = await http_json("POST", f"{url}/api/v1/processors/register", body)
        assert status == 422, (body, reply)
        assert field in {e["field"] for e in reply["errors"]}, (body, reply)
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{url}/api/v1/processors/register", data=b"{nope", headers={"content-type": "application/json"}
        ) as resp,
    ):
        assert resp.status == 422
        assert (await resp.json())["errors"][0]["field"] == "body"
    status, reply = await http_json("POST", f"{url}/api/v1/processors/heartbeat", {"status": "sleepy"})
    assert status == 422 and {e["field"] for e in reply["errors"]} == {"processor_id", "status"}


async def test_camera_view_stats_metrics_and_health(worker_url: tuple[Cluster, str]) -> None:
    cluster, url = worker_url
    settings = cluster.settings
    from datetime import UTC, datetime

    from app.models import FrameEvent

    await ensure_topics(settings.bootstrap_servers, [(settings.ready_topic("tracker"), 2)])
    status, _ = await http_json(
        "POST",
        f"{url}/api/v1/processors/register",
        {"id": "tracker", "capabilities": ["tracking"], "stateful": True, "partitions": 2},
    )
    assert status == 201
    # Each worker's router re-reads the registry every VIEW_REFRESH_SECONDS.
    await asyncio.sleep(2 * VIEW_REFRESH_SECONDS)
    frames = [
        FrameEvent(frame_id=f"c{i}", camera_id="cam-7", captured_at=datetime.now(UTC), capabilities=["tracking"])
        for i in range(5)
    ] + [FrameEvent(frame_id="lost", camera_id="cam-8", captured_at=datetime.now(UTC), capabilities=["ocr"])]
    await produce_frames(settings, frames)

    async def camera_assigned() -> Any:
        status, body = await http_json("GET", f"{url}/api/v1/cameras/cam-7")
        return body if status == 200 and body["affinity"] == {"tracking": "tracker"} else None

    await wait_until(camera_assigned, 30, what="camera affinity table")

    async def stats_counted() -> Any:
        _, stats = await http_json("GET", f"{url}/api/v1/frames/stats")
        return stats if stats["routed"] == 5 and stats["dead_lettered"].get("no_capable_processor") == 1 else None

    stats = await wait_until(stats_counted, 30, what="stats")
    assert stats["captured"] == 6 and stats["processors"]["tracker"]["routed"] == 5

    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/metrics") as resp:
            text = await resp.text()
            assert resp.status == 200
        async with session.get(f"{url}/health") as resp:
            health = await resp.json()
    assert 'frame_buffer_frames_routed_total{capability="tracking",processor_id="tracker"} 5.0' in text
    assert 'frame_buffer_frames_dropped_total{reason="no_capable_processor"} 1.0' in text
    assert health["ready"] is True and health["redis"] is True and health["partitions_assigned"] > 0
