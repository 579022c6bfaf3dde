"""The camera grid on real Redis: what the capture and the detectors note, drawn into thumbnails, served by a worker."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import cv2
import numpy as np
import pytest
import redis.asyncio as aioredis

from app.camera_grid import CACHE_SECONDS, THUMB_WIDTH, CameraGrid
from capture.reader import ReaderConfig
from capture.service import VideoCapture
from capture.sources import CameraSource
from core.settings import Settings
from frame_buffer_sdk.frame import Frame
from frame_buffer_sdk.keys import detections_field, latest_detections_key, latest_frames_key
from frame_buffer_sdk.latest import RecordLatest
from frame_buffer_sdk.models import RoutedFrame
from tests.integration.cluster import Cluster, wait_ready
from tests.video import HEIGHT, PALETTE, WIDTH, write_file

pytestmark = pytest.mark.integration

BOX = [40, 30, 60, 50]  # x, y, w, h in the camera's 160x120 pixels
GREEN = np.array([0, 200, 0])


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def capture_file(settings: Settings, video: Path, camera: str, count: int, fmt: str = "jpeg") -> None:
    """The real capture of a file at its own 50 fps: every frame published, the latest noted for the grid."""
    redis = aioredis.from_url(settings.redis_url)
    try:
        capture = VideoCapture(
            redis,
            settings.capture_stream,
            [CameraSource(camera, str(video), 50.0)],
            reader=ReaderConfig(fmt=fmt),
            latest_key=latest_frames_key(settings.app_id),
        )
        assert await capture.run() == count
    finally:
        await redis.aclose()


async def detect_once(settings: Settings, camera: str, frame_id: str, box: list[int]) -> None:
    async def person(frame: Frame) -> dict[str, Any]:
        return {"detections": [{"label": "person", "score": 1.2, "box": box}], "count": 1}

    redis = aioredis.from_url(settings.redis_url)
    try:
        record = RecordLatest(person, redis, latest_detections_key(settings.app_id), detections_field)
        now = datetime.now(UTC)
        routed = RoutedFrame(
            frame_id=frame_id,
            camera_id=camera,
            captured_at=now,
            width=WIDTH,
            height=HEIGHT,
            format="jpeg",
            processor_id="people",
            capability="object_detection",
            routed_at=now,
        )
        assert (await record(Frame(routed, b"", 0, 0)))["count"] == 1
    finally:
        await redis.aclose()


def decode(jpeg: bytes) -> Any:
    image = cv2.imdecode(np.frombuffer(jpeg, dtype=np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


async def test_thumbnails_show_the_latest_frame_with_its_boxes_and_are_made_at_most_once_a_second(
    make_settings: Callable[..., Settings], tmp_path: Path, unique: str
) -> None:
    settings = make_settings()
    camera = f"gate-{unique}"
    video = tmp_path / "gate.mp4"
    write_file(video, count=5, fps=50)  # frames 0..4: the latest, 4, is PALETTE[4] left, PALETTE[0] right
    await capture_file(settings, video, camera, 5)
    redis = aioredis.from_url(settings.redis_url)
    clock = Clock()
    grid = CameraGrid(redis, settings.app_id, clock)
    try:
        latest_id = (await grid.cameras())[0]["frame_id"]
        await detect_once(settings, camera, latest_id, BOX)
        clock.now += CACHE_SECONDS  # the detections just noted are read anew
        [listed] = await grid.cameras()
        assert listed["camera_id"] == camera and (listed["width"], listed["height"]) == (WIDTH, HEIGHT)
        assert listed["detections"] == {"object_detection": 1}
        assert listed["latency_s"] is not None and 0 <= listed["latency_s"] < 5
        assert set(listed["fps_out"]) == {"object_detection"}

        jpeg = await grid.thumbnail(camera)
        assert jpeg is not None
        image = decode(jpeg)
        scale = THUMB_WIDTH / WIDTH
        assert image.shape == (round(HEIGHT * scale), THUMB_WIDTH, 3)
        x, y, w, h = (round(v * scale) for v in BOX)
        # The box's edges are green; inside it and outside it, the frame's own colours.
        for px, py in ((x, y + h // 2), (x + w, y + h // 2), (x + w // 2, y), (x + w // 2, y + h)):
            assert np.abs(image[py, px].astype(int) - GREEN).max() < 60, (px, py, image[py, px])
        assert np.abs(image[y + h // 2, x + 10].astype(int) - np.array(PALETTE[4])).max() < 40
        assert np.abs(image[10, THUMB_WIDTH - 10].astype(int) - np.array(PALETTE[0])).max() < 40

        # A new frame within the second: the same thumbnail, not a new one.
        write_file(video, count=2, fps=50)  # latest now frame 1: PALETTE[1] left
        await capture_file(settings, video, camera, 2, fmt="bgr24")
        assert await grid.thumbnail(camera) == jpeg
        clock.now += CACHE_SECONDS
        newer = decode(await grid.thumbnail(camera) or b"")
        assert np.abs(newer[10, 10].astype(int) - np.array(PALETTE[1])).max() < 40

        assert await grid.thumbnail(f"nobody-{unique}") is None
        # A camera whose latest pixels expired before anyone looked: nothing to show.
        await capture_file(settings, video, f"{camera}-b", 2)
        latest = next(c for c in await grid.cameras() if c["camera_id"] == f"{camera}-b")
        await redis.delete(f"frame:{latest['frame_id']}")
        assert await grid.thumbnail(f"{camera}-b") is None
    finally:
        await redis.aclose()


@contextlib.asynccontextmanager
async def grid_worker(settings: Settings, tmp_path: Path, camera: str) -> AsyncIterator[str]:
    """A 5-frame video of ``camera`` captured for real, and a worker serving its grid: its URL."""
    video = tmp_path / f"{camera}.mp4"
    write_file(video, count=5, fps=50)
    await capture_file(settings, video, camera, 5)
    cluster = Cluster(settings, tmp_path / "logs")
    proc, url = cluster.worker("grid-worker")
    try:
        await wait_ready(url, proc=proc)
        yield url
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.close()


async def test_a_worker_serves_the_grid_page_json_and_thumbnails(
    make_settings: Callable[..., Settings], tmp_path: Path, unique: str
) -> None:
    camera = f"lobby-{unique}"
    async with grid_worker(make_settings(), tmp_path, camera) as url, aiohttp.ClientSession() as session:
        async with session.get(f"{url}/cameras") as resp:
            assert resp.status == 200 and "api/v1/camera-grid" in await resp.text()
        async with session.get(f"{url}/api/v1/camera-grid") as resp:
            assert resp.status == 200
            cameras = (await resp.json())["cameras"]
        assert [c["camera_id"] for c in cameras] == [camera]
        async with session.get(f"{url}/api/v1/camera-grid/{camera}/thumbnail.jpg") as resp:
            assert resp.status == 200 and resp.content_type == "image/jpeg"
            assert decode(await resp.read()).shape[1] == THUMB_WIDTH
        async with session.get(f"{url}/api/v1/camera-grid/nobody/thumbnail.jpg") as resp:
            assert resp.status == 404
