"""Real video through the whole pipeline: capture (PyAV) -> Redis -> bridge -> worker -> SDK processor.

The video is made here (``tests.video``): each frame's pixels say its number, so the processor,
reading the claim-check pixels the router pointed it to, can tell exactly which source frame
it got and how close its pixels are to what was drawn. Once from a file through the command
line, once from a live MPEG-TS stream over TCP that drops and comes back, beside a camera that
never connects.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from agents.worker_timers import VIEW_REFRESH_SECONDS
from capture.reader import ReaderConfig
from capture.service import VideoCapture
from capture.sources import CameraSource
from core.settings import Settings
from devtools.devstack import free_port
from devtools.processes import settings_env
from frame_buffer_sdk import Frame, ProcessorClient
from sample_processors.images import to_bgr
from tests.integration.cluster import ROOT, Cluster, http_json, wait_ready, wait_until
from tests.video import HEIGHT, WIDTH, distance, frame_number, write_file

pytestmark = pytest.mark.integration

CAPABILITY = "pixel_check"
# H.264 at crf 18 (and JPEG at 90 on top) moves a solid colour by a few levels, never by 40.
MAX_DISTANCE = 12.0


@dataclass
class Seen:
    camera_id: str
    sequence: int | None
    number: int
    distance: float
    fmt: str | None
    size: tuple[int | None, int | None]
    frame_key: str | None


@dataclass
class Pipeline:
    settings: Settings
    cluster: Cluster
    seen: list[Seen] = field(default_factory=list)

    def of(self, camera_id: str) -> list[Seen]:
        return sorted((s for s in self.seen if s.camera_id == camera_id), key=lambda s: s.sequence or 0)


@contextlib.asynccontextmanager
async def pipeline(make_settings: Callable[..., Settings], tmp_path: Path, unique: str) -> AsyncIterator[Pipeline]:
    """A real worker and bridge (processes), and an SDK processor here that reads every frame's pixels."""
    settings = make_settings(heartbeat_interval=1.0, bridge_block_ms=100, capture_metrics_port=0)
    cluster = Cluster(settings, tmp_path / "logs")
    worker, url = cluster.worker("worker-1")
    cluster.spawn("bridge", [sys.executable, "-m", "app.cli", "bridge"])
    result = Pipeline(settings, cluster)

    async def check(frame: Frame) -> dict[str, Any]:
        image = await asyncio.to_thread(to_bgr, frame)
        number = frame_number(image)
        routed = frame.routed
        result.seen.append(
            Seen(
                frame.camera_id,
                routed.sequence,
                number,
                distance(image, number),
                routed.format,
                (routed.width, routed.height),
                routed.frame_key,
            )
        )
        return {"number": number}

    client = ProcessorClient(
        settings.model_copy(update={"orchestrator_url": url}), f"check-{unique}", [CAPABILITY], check, capacity=1000
    )
    running: asyncio.Task[None] | None = None
    try:
        await wait_ready(url, proc=worker)
        running = asyncio.create_task(client.run())

        async def registered() -> bool:
            status, body = await http_json("GET", f"{url}/api/v1/processors/")
            return status == 200 and client.processor_id in {p["id"] for p in body}

        await wait_until(registered, 60, what="the processor registered")
        await asyncio.sleep(2 * VIEW_REFRESH_SECONDS)  # each router re-reads the registry this often
        yield result
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        if running is not None:
            await asyncio.wait_for(client.stop(), 30)
            await asyncio.wait_for(running, 10)
        cluster.close()


def assert_exact(seen: list[Seen], numbers: list[int], fmt: str) -> None:
    assert [s.number for s in seen] == numbers, [s.number for s in seen]
    assert [s.sequence for s in seen] == list(range(len(numbers)))
    worst = max(s.distance for s in seen)
    assert worst <= MAX_DISTANCE, worst
    assert {s.fmt for s in seen} == {fmt}
    assert {s.size for s in seen} == {(WIDTH, HEIGHT)}
    assert all(s.frame_key and s.frame_key.startswith("frame:") for s in seen)


async def test_every_sampled_frame_of_a_file_reaches_the_processor_with_its_pixels(
    make_settings: Callable[..., Settings], tmp_path: Path, unique: str
) -> None:
    video = tmp_path / "lobby.mp4"
    write_file(video, count=40, fps=20)  # 2 s of frames 0..39
    async with pipeline(make_settings, tmp_path, unique) as pipe:
        camera = f"lobby-{unique}"
        argv = [
            *(sys.executable, "-m", "app.cli", "capture"),
            *("--source", f"{camera}={video}", "--fps", "5", "--capabilities", CAPABILITY),
        ]
        capture = await asyncio.to_thread(
            subprocess.run,
            argv,
            env=settings_env(pipe.settings),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert capture.returncode == 0, capture.stderr
        assert f"camera {camera}: {video} finished after 40 frames" in capture.stderr
        expected = list(range(0, 40, 4))  # 20 fps sampled at 5: every fourth frame
        assert f"capture: {len(expected)} frames published from 1 camera(s)" in capture.stderr
        await wait_until(lambda: len(pipe.of(camera)) >= len(expected), 60, what="the sampled frames processed")
        await asyncio.sleep(1.0)  # a duplicate would arrive now
        assert_exact(pipe.of(camera), expected, "bgr24")


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_live_tcp_stream_that_drops_and_returns_loses_no_frame_and_a_dead_camera_stops_nothing(
    make_settings: Callable[..., Settings], tmp_path: Path, unique: str
) -> None:
    port = free_port()
    live, dead = f"live-{unique}", f"dead-{unique}"

    def serve(count: int, start: int) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "tests.video", "serve", str(port), str(count), "10", str(start)]
        return subprocess.Popen(argv, cwd=ROOT)

    async with pipeline(make_settings, tmp_path, unique) as pipe:
        redis = aioredis.from_url(pipe.settings.redis_url)
        sources = [
            CameraSource(live, f"tcp://127.0.0.1:{port}", 10.0, capabilities=(CAPABILITY,)),
            CameraSource(dead, f"tcp://127.0.0.1:{free_port()}", 5.0, capabilities=(CAPABILITY,)),
        ]
        config = ReaderConfig(fmt="jpeg", open_timeout=3, read_timeout=3, backoff_initial=0.2, backoff_max=1.0)
        capture = VideoCapture(redis, pipe.settings.capture_stream, sources, reader=config)
        stop = asyncio.Event()
        first = serve(30, 0)
        running = asyncio.create_task(capture.run(stop))
        second: subprocess.Popen[bytes] | None = None
        try:
            await asyncio.to_thread(first.wait, 30)  # 3 s of frames 0..29, then the stream ends
            assert first.returncode == 0
            second = serve(15, 30)  # the camera comes back with frames 30..44
            await asyncio.to_thread(second.wait, 30)
            try:
                await wait_until(lambda: len(pipe.of(live)) >= 45, 60, what="both streams' frames processed")
            except TimeoutError:
                state = capture.cameras[live]
                print(
                    f"published {state.published}, reconnects {state.reader.reconnects}, decoded {state.reader.decoded}"
                )
                print("processed", [s.number for s in pipe.of(live)])
                raise
            await asyncio.sleep(1.0)
        finally:
            stop.set()
            await asyncio.wait_for(running, 20)
            await redis.aclose()
            for server in (first, second):
                if server is not None and server.poll() is None:
                    server.kill()
        assert_exact(pipe.of(live), list(range(45)), "jpeg")
        assert pipe.of(dead) == []
        assert capture.cameras[live].reader.reconnects >= 1  # the drop between the two streams
        assert capture.cameras[dead].reader.reconnects >= 3
        # Per camera from the capture's own stats (no metric has a camera label), and in the camera grid's hash.
        stats = capture.stats()
        assert (stats[live]["decoded"], stats[live]["published"], stats[live]["dropped"]) == (45, 45, {})
        assert stats[dead]["reconnects"] >= 3 and stats[dead]["published"] == 0
        assert counter("frame_buffer_capture_frames_published_total") >= 45
        assert counter("frame_buffer_capture_reconnects_total") >= 4
