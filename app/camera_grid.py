"""The camera grid: each camera's latest frame as a small JPEG with its latest boxes, fps in/out and latency.

Reads the two hashes of ``frame_buffer_sdk.keys`` (one HGETALL each, never a SCAN) and, for a
thumbnail, the claim-check pixels of the camera's latest frame. The cost is bounded three
ways: thumbnails are made only when asked for (the page asks only for cameras in view),
at a fixed small width, and at most once per ``CACHE_SECONDS`` per camera, however many
browsers ask; the grid lists at most ``MAX_CAMERAS``.

Register on a worker with ``register_camera_grid(app, settings)`` while the app is built:
GET /cameras (the page), GET /api/v1/camera-grid (JSON), and
GET /api/v1/camera-grid/{camera_id}/thumbnail.jpg.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import cv2
import faust
import numpy as np
import redis.asyncio as aioredis
from faust import web

from core.settings import Settings
from frame_buffer_sdk.frame import RejectFrame
from frame_buffer_sdk.keys import latest_detections_key, latest_frames_key
from sample_processors.images import Image, bgr_image

THUMB_WIDTH = 192
THUMB_JPEG_QUALITY = 70
CACHE_SECONDS = 1.0
MAX_CAMERAS = 256
_BOX_COLOURS = {"person": (0, 200, 0), "face": (0, 160, 255)}  # BGR; other labels magenta
_OTHER_COLOUR = (255, 0, 255)


def _json(raw: Any) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def render_thumbnail(image: Image, detections: list[dict[str, Any]], width: int = THUMB_WIDTH) -> bytes:
    """``image`` scaled to ``width`` with each detection's box drawn on it, as JPEG. Blocking."""
    factor = width / image.shape[1]
    size = (width, max(1, round(image.shape[0] * factor)))
    small = np.ascontiguousarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
    for det in detections:
        box = det.get("box")
        if not (isinstance(box, list) and len(box) == 4):
            continue
        x, y, w, h = (round(float(v) * factor) for v in box)
        colour = _BOX_COLOURS.get(str(det.get("label")), _OTHER_COLOUR)
        cv2.rectangle(small, (x, y), (x + w, y + h), colour, 2)
    ok, data = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, THUMB_JPEG_QUALITY])
    if not ok:
        raise ValueError("OpenCV could not encode the thumbnail")
    return bytes(data.tobytes())


@dataclass(slots=True)
class _Thumb:
    made: float
    frame_id: str
    jpeg: bytes


class CameraGrid:
    """What the grid's views serve, from Redis; ``clock`` is monotonic seconds (a parameter for tests)."""

    def __init__(self, redis: aioredis.Redis, app_id: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.redis = redis
        self.frames_key = latest_frames_key(app_id)
        self.detections_key = latest_detections_key(app_id)
        self.clock = clock
        self._thumbs: OrderedDict[str, _Thumb] = OrderedDict()
        self._detections: tuple[float, dict[str, list[dict[str, Any]]]] | None = None

    async def _all_detections(self) -> dict[str, list[dict[str, Any]]]:
        """camera_id -> its latest detection record of each capability; read once per CACHE_SECONDS."""
        now = self.clock()
        if self._detections is not None and now - self._detections[0] < CACHE_SECONDS:
            return self._detections[1]
        raw: dict[Any, Any] = await self.redis.hgetall(self.detections_key)
        by_camera: dict[str, list[dict[str, Any]]] = {}
        for field, value in raw.items():
            camera_id, _, capability = field.decode(errors="replace").rpartition("/")
            record = _json(value)
            if record is not None and camera_id:
                by_camera.setdefault(camera_id, []).append({**record, "capability": capability})
        self._detections = (now, by_camera)
        return by_camera

    async def cameras(self) -> list[dict[str, Any]]:
        """Every camera with a latest frame (at most MAX_CAMERAS, by id): fps in/out, latency, detections."""
        raw: dict[Any, Any] = await self.redis.hgetall(self.frames_key)
        detections = await self._all_detections()
        wall = time.time()
        out = []
        for field in sorted(raw)[:MAX_CAMERAS]:
            latest = _json(raw[field])
            if latest is None:
                continue
            camera_id = field.decode(errors="replace")
            records = detections.get(camera_id, [])
            latencies = [r["latency_s"] for r in records if isinstance(r.get("latency_s"), int | float)]
            out.append(
                {
                    "camera_id": camera_id,
                    "frame_id": latest.get("frame_id"),
                    "width": latest.get("width"),
                    "height": latest.get("height"),
                    "age_s": round(wall - float(latest.get("captured") or wall), 2),
                    "fps_in": latest.get("fps_in"),
                    # capture --source's own counts of the camera (decoded, dropped by reason, ...)
                    "capture": latest.get("capture"),
                    "fps_out": {r["capability"]: r.get("fps_out") for r in records},
                    "latency_s": max(latencies) if latencies else None,
                    "detections": {r["capability"]: len(r.get("detections") or []) for r in records},
                }
            )
        return out

    async def thumbnail(self, camera_id: str) -> bytes | None:
        """The camera's latest frame with its latest boxes, as a small JPEG; None when there is none
        (no such camera, or its pixels expired)."""
        cached = self._thumbs.get(camera_id)
        if cached is not None and self.clock() - cached.made < CACHE_SECONDS:
            return cached.jpeg
        latest = _json(await self.redis.hget(self.frames_key, camera_id))
        if latest is None or not latest.get("frame_key"):
            return None
        if cached is not None and cached.frame_id == latest.get("frame_id"):
            cached.made = self.clock()  # nothing new since: the same picture
            return cached.jpeg
        pixels = await self.redis.get(str(latest["frame_key"]))
        if not isinstance(pixels, bytes):
            return None
        records = (await self._all_detections()).get(camera_id, [])
        boxes = [det for record in records for det in record.get("detections") or []]
        try:
            jpeg = await asyncio.to_thread(self._render, pixels, latest, boxes)
        except (RejectFrame, ValueError):
            return None
        self._thumbs[camera_id] = _Thumb(self.clock(), str(latest.get("frame_id")), jpeg)
        self._thumbs.move_to_end(camera_id)
        while len(self._thumbs) > MAX_CAMERAS:
            self._thumbs.popitem(last=False)
        return jpeg

    @staticmethod
    def _render(pixels: bytes, latest: dict[str, Any], boxes: list[dict[str, Any]]) -> bytes:
        image = bgr_image(pixels, latest.get("format"), latest.get("width"), latest.get("height"))
        return render_thumbnail(image, boxes)


def grid_page() -> str:
    return resources.files("app").joinpath("static", "cameras.html").read_text(encoding="utf-8")


def register_camera_grid(app: faust.App, settings: Settings) -> CameraGrid:
    """Serve the grid on this worker's web server; call while the app is built, before it starts."""
    grid = CameraGrid(aioredis.Redis.from_url(settings.redis_url, socket_timeout=5), settings.app_id)

    @app.page("/cameras", name="camera-grid-page")
    class GridPage(web.View):
        async def get(self, request: web.Request) -> web.Response:
            return self.html(grid_page(), headers={"Cache-Control": "no-cache"})

    @app.page("/api/v1/camera-grid", name="camera-grid")
    class Grid(web.View):
        async def get(self, request: web.Request) -> web.Response:
            return self.json({"cameras": await grid.cameras(), "refresh_s": CACHE_SECONDS})

    @app.page("/api/v1/camera-grid/{camera_id}/thumbnail.jpg", name="camera-grid-thumbnail")
    class Thumbnail(web.View):
        async def get(self, request: web.Request, camera_id: str) -> web.Response:
            jpeg = await grid.thumbnail(camera_id)
            if jpeg is None:
                return self.json({"error": f"no frame of camera {camera_id!r}"}, status=404)
            return self.bytes(jpeg, content_type="image/jpeg", headers={"Cache-Control": "max-age=1"})

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def close_grid(_: object, **kwargs: object) -> None:
        await grid.redis.aclose()

    return grid
