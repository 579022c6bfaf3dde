"""Running `frame-orchestrator` subcommands as a user does: a process of their own, configured by env."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from core.settings import Settings
from devtools.processes import settings_env
from tests.integration.cluster import ROOT, Cluster, http_json, wait_ready


@dataclass
class Ran:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, f"exit {self.code}: {self.err}\n{self.out}"
        return json.loads(self.out)


async def cli(settings: Settings, *args: str, within: float = 120, **env_extra: Any) -> Ran:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.cli",
        *args,
        env={**settings_env(settings, **env_extra), "COLUMNS": "200"},
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), within)
    return Ran(proc.returncode or 0, out.decode(), err.decode())


@contextlib.asynccontextmanager
async def registered(url: str, spec: dict[str, Any], every: float = 1.0) -> AsyncIterator[None]:
    """A processor registered over REST and heartbeating (as the SDK does) until the block ends."""
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        status, body = await http_json("POST", f"{url}/api/v1/processors/register", spec)
        if status in (200, 201):
            break
        assert status == 503 and asyncio.get_running_loop().time() < deadline, (status, body)
        await asyncio.sleep(0.5)

    async def beat() -> None:
        while True:
            await asyncio.sleep(every)
            with contextlib.suppress(Exception):
                await http_json("POST", f"{url}/api/v1/processors/heartbeat", {"processor_id": spec["id"]}, within=5)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def one_worker(cluster: Cluster) -> AsyncIterator[tuple[Cluster, str]]:
    """One ready worker of ``cluster`` and its URL; the cluster's logs are printed if the test fails."""
    proc, url = cluster.worker("worker-1")
    try:
        await wait_ready(url, proc=proc)
        yield cluster, url
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.close()
