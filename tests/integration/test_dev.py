"""`frame-orchestrator dev` and `stack up/down` as a user runs them: real processes, real servers."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from devtools.dev import DEMO_CAMERA, DEMO_PROCESSOR
from devtools.devstack import free_port
from devtools.devstack_daemon import alive, read_env_file
from devtools.processes import settings_env
from tests.integration.cluster import read_topic

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "app.cli"]
TOTALS = re.compile(r"^totals captured=(\d+) routed=(\d+) processed=(\d+) shed=(\d+) dead_lettered=(\d+)$")


def descendants(root: int) -> set[int]:
    """Every process below root, from /proc (children first start sessions of their own)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # The command name may hold spaces and parentheses; the ppid follows the last ')'.
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


def port_open(url: str) -> bool:
    host, port = url.split("//", 1)[1].split("/")[0].rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False
    return True


def wait_until(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="descendant scan reads /proc")
def test_dev_runs_frames_through_every_stage_and_leaves_no_process(make_settings: Any, tmp_path: Path) -> None:
    settings = make_settings()
    env = settings_env(settings)
    web_port = free_port()
    proc = subprocess.Popen(
        [
            *CLI,
            "dev",
            "--duration",
            "15",
            "--cameras",
            "2",
            "--fps",
            "5",
            "--web-port",
            str(web_port),
            "--log-dir",
            str(tmp_path / "logs"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    seen: set[int] = set()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        while proc.poll() is None:
            seen |= descendants(proc.pid)
            time.sleep(0.5)
            if len(seen) > 100:
                break
        code = proc.wait(timeout=150)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    reader.join(timeout=5)
    output = "\n".join(lines)
    assert code == 0, output
    # Plain progress lines, one a second, because stdout is not a terminal.
    assert sum(1 for line in lines if line.startswith("t=")) >= 10, output
    totals = [m for m in map(TOTALS.match, lines) if m]
    assert totals, output
    captured, routed, processed = (int(totals[-1].group(i)) for i in (1, 2, 3))
    assert captured > 0 and routed > 0 and processed > 0, output
    for name in ("worker-0", "bridge", "capture", "dev-brightness", "dev-detector", "capture-video", "dev-people"):
        assert (tmp_path / "logs" / f"{name}.log").exists(), name
        assert f"started {name} (pid" in output
    # Workers, bridge, processors and capture, each started in a session of its own.
    assert len(seen) >= 5, (seen, output)
    assert not [pid for pid in seen if alive(pid)], output

    # The demo video went through the real people detector: a decoded clip in, persons out.
    results = asyncio.run(read_topic(settings, settings.results_topic, idle_seconds=2, max_seconds=30))
    people = [r for r in results if r["processor_id"] == DEMO_PROCESSOR and r["camera_id"] == DEMO_CAMERA]
    assert people, f"no result of {DEMO_PROCESSOR} on {DEMO_CAMERA} among {len(results)} results"
    found = [r for r in people if r["result"].get("count", 0) >= 1]
    assert found, people[:3]
    assert all(d["label"] == "person" and len(d["box"]) == 4 for r in found for d in r["result"]["detections"])


def test_stack_up_writes_a_sourceable_file_and_down_stops_exactly_its_servers(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"KAFKA_BROKER", "REDIS_URL"}}
    env["FRAME_DEVSTACK_NO_DOCKER"] = "1"
    env_file = tmp_path / "stack" / "stack.env"
    up = subprocess.run([*CLI, "stack", "up", "--env-file", str(env_file)], env=env, capture_output=True, text=True)
    assert up.returncode == 0, up.stderr
    values = read_env_file(env_file)
    supervisor = int(values["FRAME_STACK_PID"])
    servers = [int(p) for p in values["FRAME_STACK_SERVER_PIDS"].split(",")]
    try:
        assert len(servers) == 2
        assert all(alive(pid) for pid in [supervisor, *servers])
        assert port_open(values["KAFKA_BROKER"])
        client = redis.Redis.from_url(values["REDIS_URL"])
        assert client.ping()
        client.close()
        # The file is shell: sourcing it exports the servers' URLs.
        sourced = subprocess.run(
            ["sh", "-c", f'set -a; . "{env_file}"; set +a; echo "$KAFKA_BROKER $REDIS_URL"'],
            capture_output=True,
            text=True,
            check=True,
        )
        assert sourced.stdout.split() == [values["KAFKA_BROKER"], values["REDIS_URL"]]
        # A second `up` finds the running stack instead of starting another.
        again = subprocess.run([*CLI, "stack", "up", "--env-file", str(env_file)], env=env, capture_output=True)
        assert again.returncode == 0
        assert read_env_file(env_file)["FRAME_STACK_PID"] == str(supervisor)
    finally:
        down = subprocess.run([*CLI, "stack", "down", "--env-file", str(env_file)], capture_output=True, text=True)
    assert down.returncode == 0, down.stderr
    assert "stack stopped" in down.stdout
    assert not env_file.exists()
    assert wait_until(lambda: not any(alive(pid) for pid in [supervisor, *servers]), 10)
    assert not port_open(values["KAFKA_BROKER"])
