"""`faust -A app.main worker`, Faust's own command, runs our worker on real servers."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from devtools.devstack import free_port
from devtools.processes import ChildProcess, settings_env
from tests.integration.cluster import ROOT, Cluster, http_json, wait_ready

pytestmark = pytest.mark.integration


async def test_faust_worker_is_our_worker_and_fausts_own_variables_change_nothing(
    make_settings: Any, tmp_path: Path
) -> None:
    settings = make_settings(shutdown_grace_seconds=10.0)
    cluster = Cluster(settings, tmp_path / "logs")
    port = free_port()
    env = settings_env(settings, web_port=port, web_advertised_host="127.0.0.1")
    # Nothing listens on port 1: a worker that took these would never become ready.
    env.update(BROKER_URL="kafka://127.0.0.1:1", TOPIC_PARTITIONS="1", WEB_BIND="127.0.0.2")
    argv = [sys.executable, "-m", "faust", "-A", "app.main", "worker", "-l", "info"]
    proc = ChildProcess("faust-worker", argv, env, cluster.log_dir, cwd=ROOT).start()
    cluster.procs.append(proc)
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(url, within=120, proc=proc)
        log = proc.log_path.read_text(errors="replace")
        # GracefulWorker.on_first_start ran: the shared topics were created before the app started.
        created = next(line for line in log.splitlines() if "created topics" in line)
        for topic in (settings.captured_topic, settings.dead_letter_topic, settings.control_topic):
            assert topic in created
        status, tables = await http_json("GET", f"{url}/table/")
        assert status == 200
        assert {"processors", "camera_affinity", "latest_waiting"} <= {t["name"] for t in tables}
        status, routes = await http_json("GET", f"{url}/router/camera_affinity/")
        assert status == 200
        [partitions] = routes.values()
        # CAPTURED_PARTITIONS, not Faust's TOPIC_PARTITIONS.
        assert sorted(partitions[f"{settings.app_id}-camera_affinity-changelog"]) == list(
            range(settings.captured_partitions)
        )
        assert proc.stop(timeout=30) == 0, proc.tail()
    finally:
        cluster.close()
