"""Every camera of one process, against Redis: pixels under ``frame:{frame_id}`` with a TTL, then XADD.

Each camera has a reader thread (``capture.reader``) and a publisher task on the event loop,
joined by a queue. When Redis falls behind, frames are dropped (``publish_backlog``): one that
waited longer than ``MAX_WAIT_SECONDS``, and the oldest when ``QUEUE_SECONDS`` of frames wait;
live video wants the newest frame, not a growing delay. The queue is that long because a stream
that has just been opened hands over in one burst every frame that arrived while FFmpeg probed
it (a second or two), and those are no backlog. A
frame counts as published once its pixels and its entry were both written, pixels first, so
no reader ever finds an entry whose pixels are not there yet.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import json
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import start_http_server
from redis.exceptions import RedisError

from capture.config import CaptureConfig
from capture.entry import entry_fields, frame_buffer_key, new_frame_id
from capture.reader import CameraReader, CapturedFrame, ReaderConfig
from capture.sources import CameraSource, check_unique
from core.metrics import (
    CAPTURE_FPS,
    CAPTURE_FRAMES_DROPPED,
    CAPTURE_FRAMES_PUBLISHED,
    export_build_info,
    register_v1_aliases,
)
from core.process import ProcessConfig
from frame_buffer_sdk.keys import latest_frames_key
from frame_buffer_sdk.logs import setup_logging
from frame_buffer_sdk.shutdown import stop_on_signals

log = logging.getLogger(__name__)

FPS_WINDOW_SECONDS = 5
MAX_WAIT_SECONDS = 2.0
QUEUE_SECONDS = 5
_REDIS_RETRY_SECONDS = 1.0


@dataclass(slots=True)
class _Camera:
    source: CameraSource
    reader: CameraReader
    queue: asyncio.Queue[CapturedFrame | None]
    sequence: int = 0
    published: int = 0
    fps_published: float = 0.0
    fps_decoded: float = 0.0
    # Drops on the loop, by reason; the reader counts its own.
    dropped: collections.Counter[str] = field(default_factory=collections.Counter)
    history: collections.deque[tuple[int, int]] = field(
        default_factory=lambda: collections.deque(maxlen=FPS_WINDOW_SECONDS + 1)
    )


class VideoCapture:
    """Reads ``sources`` and publishes their sampled frames to ``stream`` until stopped."""

    def __init__(
        self,
        redis: aioredis.Redis,
        stream: str,
        sources: list[CameraSource],
        *,
        reader: ReaderConfig | None = None,
        frame_ttl: int = 300,
        maxlen: int | None = None,
        latest_key: str | None = None,
    ) -> None:
        """``latest_key``: a hash where each camera's latest frame is noted, for the camera grid."""
        if not sources:
            raise ValueError("no camera to capture")
        check_unique(sources)
        self.redis = redis
        self.stream = stream
        self.sources = sources
        self.reader_config = reader or ReaderConfig()
        self.frame_ttl = frame_ttl
        self.maxlen = maxlen
        self.latest_key = latest_key
        self._stop_threads = threading.Event()
        self.cameras: dict[str, _Camera] = {}

    @property
    def published(self) -> int:
        return sum(camera.published for camera in self.cameras.values())

    async def run(self, stop: asyncio.Event | None = None, duration: float | None = None) -> int:
        """Until ``stop`` is set, ``duration`` seconds passed, or every source (files) ended;
        returns the frames published."""
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        threads = []
        publishers = []
        for source in self.sources:
            queue: asyncio.Queue[CapturedFrame | None] = asyncio.Queue(
                maxsize=max(2, math.ceil(source.fps * QUEUE_SECONDS))
            )
            deliver = functools.partial(self._deliver, loop, source.camera_id)
            camera = _Camera(source, CameraReader(source, deliver, self._stop_threads, self.reader_config), queue)
            self.cameras[source.camera_id] = camera
            thread = threading.Thread(
                target=self._read, args=(camera, loop), name=f"capture-{source.camera_id}", daemon=True
            )
            threads.append(thread)
            publishers.append(asyncio.create_task(self._publish(camera)))
        gauges = asyncio.create_task(self._measure())
        for thread in threads:
            thread.start()
        log.info("capturing %d camera(s) into %s: %s", len(self.sources), self.stream, ", ".join(self.cameras))
        all_done: asyncio.Future[Any] = asyncio.ensure_future(asyncio.gather(*publishers))
        stopped: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({all_done, stopped}, timeout=duration, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._stop_threads.set()
            stopped.cancel()
            # Readers see the stop at their next frame, or when a blocked read times out.
            grace = self.reader_config.read_timeout + 2
            for thread in threads:
                await asyncio.to_thread(thread.join, grace)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(all_done), timeout=5)
            all_done.cancel()
            gauges.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await gauges
        return self.published

    def _read(self, camera: _Camera, loop: asyncio.AbstractEventLoop) -> None:
        try:
            camera.reader.run()
        except Exception:  # the reader retries everything itself: this is a bug, reported loudly
            log.exception("camera %s: reader crashed", camera.source.camera_id)
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is already closed: nobody waits
                self._deliver(loop, camera.source.camera_id, None)

    def _deliver(self, loop: asyncio.AbstractEventLoop, camera_id: str, frame: CapturedFrame | None) -> None:
        """In a reader thread: hand the frame (None: the reader is done) to the loop."""
        loop.call_soon_threadsafe(self._offer, self.cameras[camera_id], frame)

    @staticmethod
    def _offer(camera: _Camera, frame: CapturedFrame | None) -> None:
        """On the loop: queue a frame; when full, the oldest waiting frame gives way."""
        queue = camera.queue
        if queue.full():
            dropped = queue.get_nowait()
            if dropped is not None:
                _drop(camera, "publish_backlog")
        queue.put_nowait(frame)

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per camera, what the metrics sum over every camera: counts since start, fps, connected."""
        return {camera_id: _stats(camera) for camera_id, camera in self.cameras.items()}

    async def _publish(self, camera: _Camera) -> None:
        source = camera.source
        safe_url = source.safe_url
        while (frame := await camera.queue.get()) is not None:
            if time.time() - frame.captured > MAX_WAIT_SECONDS:
                _drop(camera, "publish_backlog")
                continue
            fid = new_frame_id(frame.captured, source.camera_id, camera.sequence)
            fields = entry_fields(
                frame_id=fid,
                camera_id=source.camera_id,
                sequence=camera.sequence,
                captured=frame.captured,
                source_url=safe_url,
                width=frame.width,
                height=frame.height,
                fmt=self.reader_config.fmt,
                size_bytes=len(frame.pixels),
                capabilities=source.capabilities,
                priority=source.priority,
                source_time=frame.source_time,
            )
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    pipe.set(frame_buffer_key(fid), frame.pixels, ex=self.frame_ttl)
                    pipe.xadd(self.stream, fields, maxlen=self.maxlen, approximate=True)  # type: ignore[arg-type]
                    if self.latest_key:
                        pipe.hset(self.latest_key, source.camera_id, self._latest(camera, fid, frame))
                    await pipe.execute()
            except (RedisError, OSError) as exc:
                _drop(camera, "redis_error")
                log.warning("camera %s: frame not published, Redis: %s", source.camera_id, exc)
                await asyncio.sleep(_REDIS_RETRY_SECONDS)
                continue
            camera.sequence += 1
            camera.published += 1
            CAPTURE_FRAMES_PUBLISHED.inc()

    def _latest(self, camera: _Camera, frame_id: str, frame: CapturedFrame) -> str:
        return json.dumps(
            {
                "frame_id": frame_id,
                "frame_key": frame_buffer_key(frame_id),
                "width": frame.width,
                "height": frame.height,
                "format": self.reader_config.fmt,
                "captured": frame.captured,
                "fps_in": round(camera.fps_published, 2),
                "capture": _stats(camera),
            }
        )

    async def _measure(self) -> None:
        """Each second: decoded and published fps of every camera over the last few seconds."""
        while True:
            for camera in self.cameras.values():
                camera.history.append((camera.reader.decoded, camera.published))
                if len(camera.history) > 1:
                    seconds = len(camera.history) - 1
                    (d0, p0), (d1, p1) = camera.history[0], camera.history[-1]
                    camera.fps_decoded = (d1 - d0) / seconds
                    camera.fps_published = (p1 - p0) / seconds
            CAPTURE_FPS.labels("decoded").set(sum(c.fps_decoded for c in self.cameras.values()))
            CAPTURE_FPS.labels("published").set(sum(c.fps_published for c in self.cameras.values()))
            await asyncio.sleep(1.0)


def _drop(camera: _Camera, reason: str) -> None:
    camera.dropped[reason] += 1
    CAPTURE_FRAMES_DROPPED.labels(reason).inc()


def _stats(camera: _Camera) -> dict[str, Any]:
    reader = camera.reader
    return {
        "decoded": reader.decoded,
        "published": camera.published,
        "dropped": dict(camera.dropped + reader.dropped),
        "reconnects": reader.reconnects,
        "connected": reader.connected,
        "fps_decoded": round(camera.fps_decoded, 2),
        "fps_published": round(camera.fps_published, 2),
    }


def run_video_capture(
    config: CaptureConfig,
    process: ProcessConfig,
    sources: list[CameraSource],
    *,
    fmt: str = "bgr24",
    jpeg_quality: int = 90,
    duration: float | None = None,
    maxlen: int | None = None,
) -> int:
    """The capture process for real cameras: until ``duration`` is over, SIGTERM/SIGINT, or every
    file source ended; returns the frames published."""
    setup_logging(process.log_level)
    capture = VideoCapture(
        aioredis.from_url(config.redis_url),
        config.capture_stream,
        sources,
        reader=ReaderConfig(fmt=fmt, jpeg_quality=jpeg_quality),
        frame_ttl=config.frame_ttl_seconds,
        maxlen=maxlen,
        latest_key=latest_frames_key(config.app_id),
    )
    if process.metrics_port:
        export_build_info("capture")
        if process.metrics_v1_aliases:
            register_v1_aliases()
        start_http_server(process.metrics_port, addr=process.metrics_host)
    return asyncio.run(_until_signalled(capture, duration, process.shutdown_grace_seconds))


async def _until_signalled(capture: VideoCapture, duration: float | None, grace: float) -> int:
    stop = asyncio.Event()
    try:
        with stop_on_signals(stop.set, "capture", grace):
            published = await capture.run(stop, duration)
    finally:
        await capture.redis.aclose()
    log.info("capture: %d frames published from %d camera(s)", published, len(capture.sources))
    return published
