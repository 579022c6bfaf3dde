"""Stopping is bounded: a service is gone within its grace whatever its broker does, and every
service of `dev` dies with `dev`, however `dev` ends (real processes, real servers)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from devtools.devstack import DevStack, free_port
from devtools.devstack_daemon import _server_pids, alive
from devtools.processes import settings_env
from frame_buffer_sdk.shutdown import EXIT_GRACE_EXPIRED
from tests.integration.cluster import ROOT, Cluster, wait_ready, wait_until
from tests.integration.test_bridge import valid, xadd_all
from tests.integration.test_dev import CLI, descendants

pytestmark = pytest.mark.integration
linux_only = pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc and uses process death signals")
GRACE = 3.0

HANGS_ON_STOP = """
import asyncio, signal, sys
from frame_buffer_sdk.shutdown import exit_after

async def main() -> None:
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, exit_after, float(sys.argv[1]), "test")
    print("ready", flush=True)
    await asyncio.sleep(600)  # a clean stop that never completes

asyncio.run(main())
"""


def test_a_process_whose_stop_hangs_exits_when_its_grace_is_over() -> None:
    proc = subprocess.Popen([sys.executable, "-c", HANGS_ON_STOP, "0.5"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGTERM)  # a second one keeps the first deadline
        assert proc.wait(timeout=10) == EXIT_GRACE_EXPIRED
        assert 0.4 < time.monotonic() - started < 5
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.fixture
def own_broker(stack: DevStack) -> Iterator[tuple[DevStack, int]]:
    """A broker of this test alone, to kill: the session's is shared."""
    mine = DevStack(redis_url=stack.redis_url, use_env=False).start()
    pids = _server_pids(mine)
    if mine.kafka_kind != "tansu" or not pids:
        mine.stop()
        pytest.skip("the broker does not run as a child process here")
    try:
        yield mine, pids[0]
    finally:
        mine.stop()


@linux_only
async def test_sigterm_ends_a_worker_whose_broker_is_gone_within_its_grace(
    own_broker: tuple[DevStack, int], make_settings: Any, tmp_path: Path
) -> None:
    broker, broker_pid = own_broker
    settings = make_settings(kafka_broker=broker.kafka_url, shutdown_grace_seconds=GRACE)
    cluster = Cluster(settings, tmp_path / "logs")
    try:
        worker, url = cluster.worker("worker")
        await wait_ready(url, proc=worker)
        # Gone: connections refused from now on. (A frozen broker lets Faust stop in a second.)
        os.kill(broker_pid, signal.SIGKILL)
        started = time.monotonic()
        os.killpg(worker.pid, signal.SIGTERM)
        assert worker.popen is not None
        try:
            code = worker.popen.wait(timeout=GRACE + 7)
        except subprocess.TimeoutExpired:
            pytest.fail(f"worker ignored SIGTERM for {time.monotonic() - started:.0f} s:\n{worker.tail()}")
        assert time.monotonic() - started < GRACE + 5
        assert code in (0, EXIT_GRACE_EXPIRED), worker.tail()
    finally:
        cluster.close()


@linux_only
async def test_sigterm_ends_a_bridge_whose_broker_is_gone_within_its_grace(
    own_broker: tuple[DevStack, int], make_settings: Any, tmp_path: Path
) -> None:
    broker, broker_pid = own_broker
    settings = make_settings(kafka_broker=broker.kafka_url, shutdown_grace_seconds=GRACE, bridge_block_ms=100)
    cluster = Cluster(settings, tmp_path / "logs")
    client = aioredis.from_url(settings.redis_url)
    try:
        bridge = cluster.spawn("bridge", [sys.executable, "-m", "app.cli", "bridge"])
        await xadd_all(client, settings.capture_stream, [valid("cam", n, f"f-{n}") for n in range(200)])

        async def mirrored() -> bool:
            groups = await client.xinfo_groups(settings.capture_stream)
            return bool(groups) and int(groups[0]["lag"] or 0) == 0 and int(groups[0]["pending"]) == 0

        await wait_until(mirrored, 60, what="the bridge mirroring")
        os.kill(broker_pid, signal.SIGKILL)
        # Entries for a batch whose deliveries can never complete.
        await xadd_all(client, settings.capture_stream, [valid("cam", n, f"g-{n}") for n in range(200)])
        await asyncio.sleep(1)
        started = time.monotonic()
        os.killpg(bridge.pid, signal.SIGTERM)
        assert bridge.popen is not None
        try:
            code = bridge.popen.wait(timeout=GRACE + 7)
        except subprocess.TimeoutExpired:
            pytest.fail(f"bridge ignored SIGTERM for {time.monotonic() - started:.0f} s:\n{bridge.tail()}")
        assert code in (0, EXIT_GRACE_EXPIRED), bridge.tail()
    finally:
        await client.aclose()
        cluster.close()


def _dev(settings: Any, tmp_path: Path, **popen: Any) -> subprocess.Popen[bytes]:
    env = settings_env(settings)
    argv = [*CLI, "dev", "--cameras", "1", "--fps", "2", "--web-port", str(free_port())]
    return subprocess.Popen([*argv, "--log-dir", str(tmp_path / "logs")], env=env, cwd=ROOT, **popen)


def _services_started(dev: subprocess.Popen[bytes], within: float) -> set[int]:
    """The descendants of dev once all five services (2 workers... as dev starts them) run."""
    deadline = time.monotonic() + within
    seen: set[int] = set()
    while time.monotonic() < deadline:
        assert dev.poll() is None, f"dev exited with {dev.returncode}"
        seen = descendants(dev.pid)
        if len(seen) >= 5:
            return seen
        time.sleep(0.5)
    raise AssertionError(f"dev started only {len(seen)} services within {within:.0f} s")


def _all_gone(pids: set[int], within: float) -> list[int]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.2)
    left = [p for p in pids if alive(p)]
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    return left


@linux_only
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="no setpriv (util-linux): no process death signal")
@pytest.mark.faults_long
def test_every_service_dies_with_a_sigkilled_dev(make_settings: Any, tmp_path: Path) -> None:
    settings = make_settings(shutdown_grace_seconds=GRACE)
    dev = _dev(settings, tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        services = _services_started(dev, 120)
        dev.kill()
        dev.wait(10)
        assert not _all_gone(services, GRACE + 10), "services outlived their SIGKILLed dev"
    finally:
        if dev.poll() is None:
            dev.kill()


@linux_only
@pytest.mark.faults_long
def test_closing_the_terminal_of_dev_stops_every_service(make_settings: Any, tmp_path: Path) -> None:
    settings = make_settings(shutdown_grace_seconds=GRACE)
    controller, terminal = pty.openpty()
    dev = _dev(settings, tmp_path, stdin=terminal, stdout=terminal, stderr=terminal)
    os.close(terminal)
    try:
        services = _services_started(dev, 120)
        # What a closed terminal window does: the tty is gone, then the foreground gets SIGHUP.
        os.close(controller)
        dev.send_signal(signal.SIGHUP)
        assert not _all_gone(services, 60), "services outlived their dev's terminal"
        assert dev.wait(30) is not None
    finally:
        if dev.poll() is None:
            dev.kill()
