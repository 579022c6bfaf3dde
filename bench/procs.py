"""The load generator of a benchmark, a child process driven one JSON command per line.

The services under test are ``devtools.processes.ChildProcess``es: each runs in a session
of its own and is stopped by its own group (SIGTERM, then SIGKILL), so nothing else on the
machine is touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from typing import Any


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

    async def send(self, tag: str, rate: float, count: int, limit: float, fanout: bool = False) -> dict[str, Any]:
        """Send ``count`` frames at ``rate`` (0 = flat out); returns the generator's own account.

        ``fanout``: each frame asks for every capability, so it arrives once per processor."""
        assert self.proc is not None and self.proc.stdin is not None, "start() first"
        command = {"tag": tag, "rate": rate, "count": count, "fanout": fanout}
        self.proc.stdin.write((json.dumps(command) + "\n").encode())
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
