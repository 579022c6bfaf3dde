"""Child processes of a benchmark: services under test and the load generator.

Each child runs in a session of its own and is stopped by its own pid (SIGTERM, then
SIGKILL), so nothing else on the machine is touched. Peak memory is read from
``/proc/<pid>/status`` (VmHWM) while the child is still alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM of a live process in MiB; None when the process is gone or /proc is not there."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


class Child:
    """A service under test, logging to a file of its own."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log_file:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None, "start() first"
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; log tail:\n{self.log_tail()}")

    def peak_rss_mb(self) -> float | None:
        return peak_rss_mb(self.pid) if self.alive() else None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


class LoadGen:
    """``bench.loadgen`` in a child process, driven one JSON command per line."""

    def __init__(self, sink: str, url: str, target: str, capabilities: list[str], cameras: int) -> None:
        self.argv = [
            sys.executable,
            "-m",
            "bench.loadgen",
            "--sink",
            sink,
            "--url",
            url,
            "--target",
            target,
            "--capabilities",
            ",".join(capabilities),
            "--cameras",
            str(cameras),
        ]
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, limit: float = 30.0) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        ready = await self._reply(limit)
        if not ready.get("ready"):
            raise RuntimeError(f"load generator did not start: {ready}")

    async def _reply(self, limit: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), limit)
        if not line:
            raise RuntimeError(f"load generator exited with {await self.proc.wait()}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    async def send(self, tag: str, rate: float, count: int, limit: float) -> dict[str, Any]:
        """Send ``count`` frames at ``rate`` (0 = flat out); returns the generator's own account."""
        assert self.proc is not None and self.proc.stdin is not None, "start() first"
        self.proc.stdin.write((json.dumps({"tag": tag, "rate": rate, "count": count}) + "\n").encode())
        await self.proc.stdin.drain()
        return await self._reply(limit)

    async def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
