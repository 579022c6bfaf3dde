"""A worker restarted on its old data directory against a broker that lost its data restores
its tables from the (now empty) changelogs instead of crashing (real RocksDB, real brokers)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.devstack import DevStack
from tests.integration.cluster import Cluster, http_json, produce_frames, small_frame, wait_ready, wait_until

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def own_broker(stack: DevStack) -> Iterator[DevStack]:
    broker = DevStack(redis_url=stack.redis_url, use_env=False).start()
    try:
        yield broker
    finally:
        broker.stop()


async def test_a_worker_on_old_state_restores_from_a_broker_that_lost_its_data(
    stack: DevStack, make_settings: Any, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"

    def settings_for(broker: DevStack) -> Any:
        return make_settings(
            kafka_broker=broker.kafka_url, store="rocksdb://", data_dir=str(data_dir), recovery_consistency_check=True
        )

    with own_broker(stack) as first:
        cluster = Cluster(settings_for(first), tmp_path / "logs-1")
        try:
            worker, url = cluster.worker("worker")
            await wait_ready(url, proc=worker)
            spec = {"id": "track", "capabilities": ["tracking"], "stateful": True, "capacity": 10_000}
            status, _ = await http_json("POST", f"{url}/api/v1/processors/register", spec)
            assert status == 201
            frames = [small_frame(f"f-{n}", f"cam-{n % 8}", n, f"px:{n}", ["tracking"]) for n in range(200)]
            await produce_frames(cluster.settings, frames)

            async def routed() -> bool:
                _, stats = await http_json("GET", f"{url}/api/v1/frames/stats")
                return bool(stats.get("routed", 0) >= 200)

            await wait_until(routed, 60, what="200 frames routed")
            assert worker.stop(timeout=30) == 0, worker.tail()
        finally:
            cluster.close()
    checkpoints = list(data_dir.rglob("*.db"))
    assert checkpoints, "the worker kept no RocksDB state"

    with own_broker(stack) as second:  # a new, empty broker: every changelog ends before the checkpoints
        cluster = Cluster(settings_for(second), tmp_path / "logs-2")
        try:
            worker, url = cluster.worker("worker")
            await wait_ready(url, within=120, proc=worker)
            log = worker.log_path.read_text(errors="replace")
            assert "ConsistencyError" not in log
            assert "wiped the store partition" in log, worker.tail(80)
            _, camera = await http_json("GET", f"{url}/api/v1/cameras/cam-1")
            assert camera["affinity"] == {}, "the affinity of the lost broker is gone with it"
        finally:
            cluster.close()
