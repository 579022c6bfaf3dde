"""A lone processor on real servers: judged by the leader's tick through the heartbeat path.

With one processor there is no peer whose heartbeats show the path is flowing; the leader's
own tick (agents.path_tick) is that peer. A killed lone processor must still be failed within
about a deadline: which also proves the ticks come back through the control topic and the
registry fold, for without them the leader would hold its verdicts for ever.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from tests.integration.cluster import Cluster, http_json, wait_ready, wait_until

pytestmark = pytest.mark.integration
INTERVAL = 1.0
MISSES = 3


@pytest.fixture
def cluster(make_settings: Any, tmp_path: Path) -> Iterator[Cluster]:
    settings: Settings = make_settings(heartbeat_interval=INTERVAL, heartbeat_misses=MISSES, lag_sample_interval=0.5)
    c = Cluster(settings, tmp_path / "logs")
    yield c
    c.close()


async def status_of(url: str, pid: str) -> str | None:
    status, body = await http_json("GET", f"{url}/api/v1/processors/")
    if status != 200:
        return None
    return next((str(p["status"]) for p in body if p["id"] == pid), None)


async def test_a_killed_lone_processor_is_failed_about_a_deadline_after_its_last_heartbeat(cluster: Cluster) -> None:
    worker, url = cluster.worker("worker")
    await wait_ready(url, proc=worker)
    argv = [sys.executable, "-m", "sample_processors", "detector", "lone", "--capabilities", "object_detection"]
    lone = cluster.spawn("processor", argv, orchestrator_url=url)
    await wait_until(lambda: status_of(url, "lone"), 60, what="the processor registered")
    await wait_until(lambda: "leader: sampling lag" in worker.log_path.read_text(errors="replace"), 60, what="a leader")
    deadline = INTERVAL * MISSES
    # Past the new leader's quiet deadline, and healthy all along while it beats.
    settle = time.monotonic() + 2 * deadline
    while time.monotonic() < settle:
        assert await status_of(url, "lone") == "healthy", cluster.logs()
        await asyncio.sleep(1)
    lone.kill()
    killed = time.monotonic()

    async def unhealthy() -> bool:
        return await status_of(url, "lone") == "unhealthy"

    await wait_until(unhealthy, 40, what="the killed lone processor judged unhealthy")
    took = time.monotonic() - killed
    print(f"lone processor judged unhealthy {took:.1f} s after SIGKILL (deadline {deadline:.0f} s)")
    # A deadline after its last heartbeat (up to one interval before the kill), plus the tick's
    # age and the registry fold (3.5 s measured); a verdict held for want of ticks never comes.
    assert took < deadline + INTERVAL + 10, cluster.logs()
