"""Real processes for integration tests: workers, bridges, processors, each a subprocess.

Everything is configured through the environment from one Settings object, exactly as
the Procfile runs it, so a test that kills a process with SIGKILL kills the real thing.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from core.settings import Settings
from devtools.devstack import free_port
from devtools.processes import ChildProcess, settings_env
from frame_buffer_sdk.models import FrameEvent
from frame_buffer_sdk.offsets import subscribe_from_first
from tests.conftest import TEST_API_TOKEN

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Cluster:
    """The processes of one test; ``close()`` stops whatever is still running."""

    settings: Settings
    log_dir: Path
    procs: list[ChildProcess] = field(default_factory=list)

    def spawn(self, name: str, argv: list[str], **env_extra: Any) -> ChildProcess:
        env = settings_env(self.settings, **env_extra)
        proc = ChildProcess(name, argv, env, self.log_dir, cwd=ROOT).start()
        self.procs.append(proc)
        return proc

    def worker(self, name: str, web_port: int | None = None) -> tuple[ChildProcess, str]:
        port = web_port or free_port()
        proc = self.spawn(name, [sys.executable, "-m", "app.main"], web_port=port, web_advertised_host="127.0.0.1")
        return proc, f"http://127.0.0.1:{port}"

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop(timeout=15)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.tail()}" for p in self.procs)


async def wait_until(predicate: Callable[[], Any], within: float, interval: float = 0.25, what: str = "") -> Any:
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise TimeoutError(f"timed out after {within:.0f} s waiting for {what or predicate}")


async def http_json(
    method: str,
    url: str,
    body: Any = None,
    within: float = 20,
    token: str | None = TEST_API_TOKEN,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """One request with a JSON body, as a processor holding ``token`` sends it (None: no token)."""
    sent = {**({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, json=body, headers=sent, timeout=aiohttp.ClientTimeout(total=within)) as resp,
    ):
        text = await resp.text()
        return resp.status, (json.loads(text) if text else None)


async def wait_ready(base_url: str, within: float = 90, proc: ChildProcess | None = None) -> None:
    """Until GET /health answers 200; fails at once if ``proc`` (the worker) has died."""

    async def ready() -> bool:
        if proc is not None and not proc.alive():
            raise RuntimeError(
                f"{proc.name} exited with {proc.popen.returncode if proc.popen else None}:\n{proc.tail()}"
            )
        try:
            status, _ = await http_json("GET", f"{base_url}/health", within=3)
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False
        return status == 200

    await wait_until(ready, within, interval=0.5, what=f"{base_url}/health")


async def produce_frames(settings: Settings, frames: Iterable[FrameEvent]) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(settings.captured_topic, key=f.camera_id.encode(), value=f.model_dump_json().encode())
            for f in frames
        ]
        await asyncio.gather(*futures)
        return len(futures)
    finally:
        await producer.stop()


def small_frame(
    frame_id: str, camera_id: str, sequence: int, frame_key: str, capabilities: list[str], priority: int = 0
) -> FrameEvent:
    """An 8x8 gray8 frame whose pixels ``store_pixels`` puts under ``frame_key``."""
    return FrameEvent(
        frame_id=frame_id,
        camera_id=camera_id,
        captured_at=datetime.now(UTC),
        sequence=sequence,
        width=8,
        height=8,
        format="gray8",
        size_bytes=64,
        frame_key=frame_key,
        capabilities=capabilities,
        priority=priority,
    )


async def store_pixels(settings: Settings, frames: Iterable[FrameEvent], ttl: int = 600) -> None:
    """Claim-check: the pixel bytes each frame's frame_key names, as the capture service stores them."""
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        async with client.pipeline(transaction=False) as pipe:
            for f in frames:
                if f.frame_key:
                    pipe.set(f.frame_key, pixels_of(f), ex=ttl)
            await pipe.execute()
    finally:
        await client.aclose()


def pixels_of(frame: FrameEvent) -> bytes:
    size = (frame.width or 1) * (frame.height or 1)
    return bytes((hash(frame.frame_id) + i) % 256 for i in range(size))


async def assign_from_start(consumer: AIOKafkaConsumer, topic: str, within: float = 30.0) -> None:
    """Read every partition of ``topic`` from its first record, once the topic exists.

    A consumer subscribed to a topic that does not exist yet only sees it at its next
    metadata refresh, five minutes later, so a test reading a topic that another process
    is about to create would time out. The consumer must be built with group_id=None and
    auto_offset_reset="earliest". Each partition starts at offset 0, not at the broker's
    earliest offset, which Tansu may answer past the first batch (frame_buffer_sdk.offsets).
    """
    deadline = time.monotonic() + within
    while topic not in await consumer.topics():
        assert time.monotonic() < deadline, f"topic {topic} was not created within {within} s"
        await asyncio.sleep(0.2)
    await subscribe_from_first(consumer, topic, within=max(1.0, deadline - time.monotonic()))


async def read_topic(
    settings: Settings,
    topic: str,
    *,
    idle_seconds: float = 3.0,
    max_seconds: float = 60.0,
    until: Callable[[list[Any]], bool] | None = None,
) -> list[Any]:
    """Every record of a topic from the beginning, as parsed JSON; stops when idle or ``until``."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    values: list[Any] = []
    try:
        await assign_from_start(consumer, topic, within=max_seconds)
        started = last = time.monotonic()
        while time.monotonic() - started < max_seconds:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            got = [json.loads(m.value) for msgs in batch.values() for m in msgs if m.value]
            if got:
                values.extend(got)
                last = time.monotonic()
                if until is not None and until(values):
                    break
            elif time.monotonic() - last > idle_seconds and (until is None or until(values)):
                break
    finally:
        await consumer.stop()
    return values
