"""The dashboard of a real worker, in a real Chromium: live values of the running system.

A worker subprocess (``frame-orchestrator worker``) runs against the session's Kafka and
Redis; a processor registers over REST and frames are produced onto the captured topic
as the bridge would. The page must show that processor and non-zero captured/routed totals.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer

from core.settings import Settings
from devtools.processes import ChildProcess, settings_env
from frame_buffer_sdk.kafka import ensure_topics
from frame_buffer_sdk.models import FrameEvent
from tests.browser.conftest import REPO_ROOT
from tests.conftest import TEST_API_TOKEN

if TYPE_CHECKING:  # Playwright is imported only where a browser runs: without it, the tests skip
    from tests.browser.pages import Browser

pytestmark = [pytest.mark.browser, pytest.mark.integration]

WORKER_READY_TIMEOUT = 60.0
CAMERAS = ("cam-a", "cam-b", "cam-c")


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    # Reads need the token too: the page must send the one its URL fragment carries.
    return make_settings(captured_partitions=2, lag_sample_interval=0.5, api_read_auth=True)


@dataclass
class Worker:
    url: str
    proc: ChildProcess

    def log_tail(self) -> str:
        return self.proc.log_path.read_text(errors="replace")[-3000:]


@pytest.fixture
def worker(settings: Settings, tmp_path: Path) -> Iterator[Worker]:
    """A worker process of its own, as `frame-orchestrator worker` runs it."""
    cli = Path(sys.executable).with_name("frame-orchestrator")
    argv = [str(cli), "worker"] if cli.exists() else [sys.executable, "-m", "app.main"]
    proc = ChildProcess("worker", argv, settings_env(settings), tmp_path, cwd=REPO_ROOT).start()
    try:
        yield Worker(f"http://127.0.0.1:{settings.web_port}", proc)
    finally:
        proc.stop(timeout=20)


async def _wait_ready(http: aiohttp.ClientSession, worker: Worker) -> None:
    deadline = time.monotonic() + WORKER_READY_TIMEOUT
    last = "no answer"
    while time.monotonic() < deadline:
        if not worker.proc.alive():
            raise AssertionError(f"the worker exited with {worker.proc.returncode}:\n{worker.log_tail()}")
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(f"{worker.url}/health") as resp:
                last = f"{resp.status} {await resp.text()}"
                if resp.status == 200:
                    return
        await asyncio.sleep(0.5)
    raise AssertionError(f"the worker was not ready within {WORKER_READY_TIMEOUT:.0f} s: {last}\n{worker.log_tail()}")


async def _register(http: aiohttp.ClientSession, base: str, spec: dict[str, object]) -> None:
    """POST the spec; a 503 means the registry has not confirmed yet and asks to retry, as the SDK does."""
    deadline = time.monotonic() + 30
    while True:
        async with http.post(f"{base}/api/v1/processors/register", json=spec) as resp:
            body = await resp.text()
            if resp.status in (200, 201):
                return
            if resp.status != 503 or time.monotonic() > deadline:
                raise AssertionError(f"registration answered {resp.status}: {body}")
        await asyncio.sleep(0.5)


@contextlib.asynccontextmanager
async def _producing(settings: Settings, capability: str) -> AsyncIterator[list[int]]:
    """Frames onto the captured topic, as the bridge writes them, until the block ends."""
    await ensure_topics(settings.bootstrap_servers, [(settings.captured_topic, settings.captured_partitions)])
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all", linger_ms=5)
    await producer.start()
    sent = [0]

    async def run() -> None:
        while True:
            for camera in CAMERAS:
                frame = FrameEvent.model_validate(
                    {
                        "frame_id": uuid.uuid4().hex,
                        "camera_id": camera,
                        "captured_at": datetime.now(UTC),
                        "capabilities": [capability],
                        "width": 320,
                        "height": 240,
                    }
                )
                await producer.send_and_wait(
                    settings.captured_topic, frame.model_dump_json().encode(), key=camera.encode()
                )
                sent[0] += 1
            await asyncio.sleep(0.1)

    task = asyncio.create_task(run())
    try:
        yield sent
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await producer.stop()


async def test_dashboard_shows_the_running_system(
    browser: Browser, worker: Worker, settings: Settings, unique: str, artifacts: Path
) -> None:
    pid = f"detector-{unique}"
    # The processors' token on every request, as the SDK sends it.
    auth = {"Authorization": f"Bearer {TEST_API_TOKEN}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30), headers=auth) as http:
        await _wait_ready(http, worker)
        await _register(http, worker.url, {"id": pid, "capabilities": ["detect"], "capacity": 40, "partitions": 2})

    async with _producing(settings, "detect") as sent:
        page = await browser.new_page()
        await page.goto(f"{worker.url}/#token={TEST_API_TOKEN}")
        row = f"document.querySelector('tr[data-processor-id=\"{pid}\"]')"
        await page.wait_for(row, within=30)
        await page.wait_for(
            "Number(document.getElementById('total-captured').dataset.value) > 0"
            " && Number(document.getElementById('total-routed').dataset.value) > 0",
            within=45,
        )
        # Rates need two snapshots that differ, and the routed count per processor a stats tick.
        await page.wait_for("Number(document.getElementById('rate-captured').dataset.value) > 0", within=30)
        await page.wait_for(f"Number({row}.querySelector('.routed').textContent.replace(/,/g, '')) > 0", within=30)

        shown = await page.evaluate(
            f"""({{
            status: document.getElementById('status').dataset.state,
            captured: Number(document.getElementById('total-captured').dataset.value),
            routed: Number(document.getElementById('total-routed').dataset.value),
            caps: Array.from({row}.querySelectorAll('.caps span')).map(s => s.textContent),
            capacity: Number({row}.querySelector('.lagtext').dataset.capacity),
            level: {row}.dataset.level,
            health: {row}.dataset.status,
            partitions: Number({row}.querySelector('.partitions').textContent),
            }})"""
        )
        assert shown["status"] == "ok"
        assert 0 < shown["captured"] <= sent[0]
        assert 0 < shown["routed"] <= shown["captured"]
        assert shown["caps"] == ["detect"] and shown["capacity"] == 40
        assert shown["level"] in {"NORMAL", "ELEVATED", "HIGH", "CRITICAL"}
        assert shown["health"] in {"healthy", "unhealthy", "stalled"}
        assert page.exceptions == []

        # A few more seconds of samples so the charts in the saved picture show a line, not a dot.
        await page.wait_for("Number(document.getElementById('chart-captured').dataset.points) >= 6", within=20)
        shot = await page.screenshot(artifacts / "dashboard.png")
    docs = REPO_ROOT / "docs"
    docs.mkdir(exist_ok=True)
    shutil.copyfile(shot, docs / "dashboard.png")
