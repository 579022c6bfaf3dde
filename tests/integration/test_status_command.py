"""`frame-orchestrator status` against a real worker (issue 12 §6): the table and --json agree with the system."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from devtools.devstack import free_port
from tests.integration.cluster import Cluster, wait_until
from tests.integration.tools import cli, one_worker, registered

pytestmark = pytest.mark.integration


@pytest.fixture
async def worker(make_settings: Any, tmp_path: Path) -> AsyncIterator[tuple[Cluster, str]]:
    # Reads need the token: status must send the one in its environment.
    async with one_worker(
        Cluster(make_settings(api_read_auth=True, lag_sample_interval=0.5), tmp_path / "logs")
    ) as running:
        yield running


async def test_status_shows_workers_processors_lags_health_and_the_bridge_backlog(
    worker: tuple[Cluster, str], unique: str
) -> None:
    cluster, url = worker
    settings = cluster.settings
    # No bridge runs: the backlog comes from the capture stream's group in Redis.
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        await client.xgroup_create(settings.capture_stream, settings.capture_group, id="0", mkstream=True)
        for n in range(3):
            await client.xadd(settings.capture_stream, {"n": str(n)})
    finally:
        await client.aclose()

    pid = f"det-{unique}"
    async with registered(url, {"id": pid, "capabilities": ["detect"], "capacity": 50, "partitions": 2}):

        async def described() -> Any:
            report = (await cli(settings, "status", "--json", "--url", url)).json()
            procs = {p["id"]: p for p in report["processors"]}
            full = pid in procs and procs[pid]["partitions"] and report["router"]["partitions"]
            return report if full and report["workers"][0]["partitions"] else None

        report = await wait_until(described, 60, interval=1, what="a full status report")
        table = await cli(settings, "status", "--url", url)

    assert report["url"] == url and report["health"]["ready"] is True
    assert report["workers"] == [
        {
            "url": url,
            "partitions": [0, 1, 2, 3],
            "ready": True,
            "boot_id": report["health"]["boot_id"],
            "routing_stuck_seconds": report["workers"][0]["routing_stuck_seconds"],
        }
    ]
    assert [p["partition"] for p in report["router"]["partitions"]] == [0, 1, 2, 3]
    assert {p["worker"] for p in report["router"]["partitions"]} == {url}
    assert report["router"]["level"] == "NORMAL"
    (proc,) = report["processors"]
    assert proc["id"] == pid and proc["status"] == "healthy" and proc["level"] == "NORMAL"
    assert proc["capabilities"] == ["detect"] and proc["capacity"] == 50 and proc["replicas"] == 0
    assert proc["topic"] == settings.ready_topic(pid)
    assert [p["partition"] for p in proc["partitions"]] == [0, 1]
    assert report["bridges"] == []
    assert report["bridge_backlog"] == {"source": "redis", "backlog": 3, "pending": 0}
    assert set(report["totals"]) >= {"captured", "routed", "processed", "shed", "dead_lettered"}

    assert table.code == 0, table.err
    for shown in ("Workers (routers)", "Router lag", "Processors", pid, "healthy", "3 unread, 0 pending", url):
        assert shown in table.out, table.out


async def test_status_fails_clearly_when_the_worker_cannot_be_asked(worker: tuple[Cluster, str]) -> None:
    cluster, url = worker
    nobody = f"http://127.0.0.1:{free_port()}"
    ran = await cli(cluster.settings, "status", "--url", nobody)
    assert ran.code == 1 and f"cannot reach the worker at {nobody}" in ran.err and ran.out == ""

    refused = await cli(cluster.settings, "status", "--json", "--url", url, "--token", "wrong-token")
    assert refused.code == 1 and "refused" in refused.err and "403" in refused.err, refused.err
