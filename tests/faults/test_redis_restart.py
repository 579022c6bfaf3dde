"""Redis restarted mid-stream on the same port: the capture stream, the pixels and the done
markers survive in its append-only file, and every service reconnects (real processes).

The guarantee stated in the README: with Redis persisting every write (appendonly yes,
appendfsync always) a restart, even a crash, loses nothing: the bridge's pending entries are
mirrored on reconnecting, so each valid (frame, capability) is processed once. The case runs on
a Redis of its own, so that stopping it touches no other test.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.devstack import free_port, redis_binary, wait_for_port
from tests.integration.cluster import Cluster
from tests.integration.fault_run import (
    Pipeline,
    assert_accounted,
    assert_camera_order,
    assert_no_duplicates,
    assert_stats_balance,
    fault_settings,
    run_with_fault,
)

pytestmark = pytest.mark.integration

DOWN_SECONDS = 5.0


class PersistentRedis:
    """A Redis (or Valkey) that writes every command to its append-only file before answering."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            redis_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.workdir),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--protected-mode",
            "no",
            "--daemonize",
            "no",
        ]
        with open(self.workdir / "redis.log", "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_for_port("127.0.0.1", self.port, 20, self.proc)

    def crash(self) -> None:
        """SIGKILL: no shutdown save; only what the append-only file holds comes back."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.crash()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[PersistentRedis]:
    server = PersistentRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def cluster(make_settings: Any, redis_server: PersistentRedis, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(fault_settings(make_settings, redis_url=redis_server.url), tmp_path / "logs")
    yield c
    c.close()


async def test_a_redis_restart_mid_stream_loses_and_repeats_nothing(
    cluster: Cluster, redis_server: PersistentRedis
) -> None:
    restarting: list[asyncio.Task[None]] = []

    async def restart_later() -> None:
        await asyncio.sleep(DOWN_SECONDS)
        redis_server.start()  # the same port: every client's URL stays right

    async def crash(pipeline: Pipeline) -> None:
        redis_server.crash()
        restarting.append(asyncio.create_task(restart_later()))

    async def restarted(pipeline: Pipeline) -> None:
        await restarting[0]

    started = time.monotonic()
    _, outcome = await run_with_fault(cluster, crash, restarted, bridge=True)

    alive = [p.name for p in cluster.procs if p.alive()]
    assert len(alive) == len(cluster.procs), f"only {alive} survived the Redis restart\n{cluster.logs()}"
    assert time.monotonic() - started < 150
    assert_accounted(outcome, cluster)
    assert_no_duplicates(outcome)
    assert_camera_order(outcome)
    assert_stats_balance(outcome)
