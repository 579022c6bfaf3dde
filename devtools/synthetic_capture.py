"""Synthetic cameras: N cameras x fps frames into the capture stream, as a capture service writes them.

Each frame's pixels (a small grayscale image whose gradient moves and whose brightness swings,
so motion and brightness processors see change) go to Redis under ``frame_key`` with a TTL;
its metadata goes to the stream in the flat form with a fresh W3C ``traceparent``. Frames
follow a fixed schedule (frame k of every camera at start + k/fps); each tick writes what is
due in one pipeline, so the rate holds however long a round trip takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import secrets
import time
from dataclasses import dataclass

import numpy as np
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.typing import EncodableT, FieldT

from core.settings import Settings
from frame_buffer_sdk.logs import setup_logging
from frame_buffer_sdk.models import CAPABILITY_RE
from frame_buffer_sdk.shutdown import stop_on_signals
from frame_buffer_sdk.telemetry import new_traceparent

log = logging.getLogger(__name__)

# Ticks per second at most: faster rates write several frames per camera per tick.
MAX_TICK_HZ = 50
FORMAT = "gray8"
MALFORMED_KINDS = ("missing_camera_id", "bad_timestamp", "bad_json", "negative_width", "bad_capability")
_SHIFT_PER_FRAME = 4  # pixels the gradient moves per frame
_BRIGHTNESS_SWING = 48
_BRIGHTNESS_PERIOD = 50  # frames per brightness cycle


@dataclass(slots=True)
class CaptureConfig:
    cameras: int
    fps: float
    duration: float | None
    width: int = 320
    height: int = 240
    capabilities: list[str] | None = None
    priority: int | None = None
    malformed_ratio: float = 0.0
    seed: int | None = None
    frame_ttl: int = 300
    maxlen: int | None = None  # approximate MAXLEN of the stream; None never trims

    def validate(self) -> None:
        if self.cameras < 1:
            raise ValueError(f"cameras must be >= 1, got {self.cameras}")
        if not (self.fps > 0 and math.isfinite(self.fps)):
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if self.duration is not None and not (self.duration >= 0 and math.isfinite(self.duration)):
            raise ValueError(f"duration must be >= 0 seconds, got {self.duration}")
        if self.width < 1 or self.height < 1:
            raise ValueError(f"width and height must be >= 1, got {self.width}x{self.height}")
        if not 0.0 <= self.malformed_ratio <= 1.0:
            raise ValueError(f"malformed_ratio must be within [0, 1], got {self.malformed_ratio}")
        if self.priority is not None and not 0 <= self.priority <= 10:
            raise ValueError(f"priority must be within [0, 10], got {self.priority}")
        for cap in self.capabilities or []:
            if not CAPABILITY_RE.match(cap):
                raise ValueError(f"invalid capability name {cap!r}")
        if self.frame_ttl < 1:
            raise ValueError(f"frame_ttl must be >= 1 second, got {self.frame_ttl}")

    @property
    def frames_per_camera(self) -> int | None:
        """Frame k is due at k/fps for k < duration x fps; None runs until stopped."""
        return None if self.duration is None else round(self.duration * self.fps)


def synthetic_pixels(width: int, height: int, sequence: int, phase: int) -> bytes:
    """A gray8 image: a horizontal gradient that moves every frame plus a slow brightness swing."""
    # The gradient's wrap-around edge moves sideways: a shift no brightness change can cancel out.
    base = (np.arange(width, dtype=np.int32) * 255 // max(width - 1, 1) + phase) % 256
    cols = np.roll(base, sequence * _SHIFT_PER_FRAME)
    rows = np.arange(height, dtype=np.int32)[:, None] * 64 // max(height - 1, 1)
    brightness = int(_BRIGHTNESS_SWING * math.sin(2 * math.pi * sequence / _BRIGHTNESS_PERIOD))
    image = np.clip(cols[None, :] * 3 // 4 + rows + brightness, 0, 255).astype(np.uint8)
    return bytes(image.tobytes())


@dataclass(slots=True)
class _Camera:
    camera_id: str
    priority: int
    phase: int
    sequence: int = 0


class _Writer:
    """Turns due frames into pipelined SET + XADD commands."""

    def __init__(self, stream: str, config: CaptureConfig, rng: random.Random) -> None:
        self.stream = stream
        self.config = config
        self.rng = rng
        self.run = secrets.token_hex(4)
        self.capabilities = ",".join(config.capabilities) if config.capabilities else None
        self.size = config.width * config.height
        self.malformed = 0

    def add(self, pipe: Pipeline, camera: _Camera, captured_at: float) -> None:
        cfg = self.config
        seq = camera.sequence
        camera.sequence += 1
        frame_id = f"{camera.camera_id}-{self.run}-{seq}"
        frame_key = f"{self.stream}:pixels:{frame_id}"
        fields: dict[FieldT, EncodableT] = {
            "frame_id": frame_id,
            "camera_id": camera.camera_id,
            "timestamp": f"{captured_at:.6f}",
            "sequence": str(seq),
            "width": str(cfg.width),
            "height": str(cfg.height),
            "format": FORMAT,
            "size_bytes": str(self.size),
            "priority": str(camera.priority),
            "frame_key": frame_key,
            "traceparent": new_traceparent(),
        }
        if self.capabilities:
            fields["capabilities"] = self.capabilities
        if cfg.malformed_ratio and self.rng.random() < cfg.malformed_ratio:
            fields = self._break(fields)
            self.malformed += 1
        else:
            pipe.set(frame_key, synthetic_pixels(cfg.width, cfg.height, seq, camera.phase), ex=cfg.frame_ttl)
        pipe.xadd(self.stream, fields, maxlen=cfg.maxlen, approximate=True)

    def _break(self, fields: dict[FieldT, EncodableT]) -> dict[FieldT, EncodableT]:
        """One of the defects capture services in the field produce, for the dead-letter path."""
        kind = self.rng.choice(MALFORMED_KINDS)
        if kind == "missing_camera_id":
            del fields["camera_id"]
        elif kind == "bad_timestamp":
            fields["timestamp"] = "yesterday at noon"
        elif kind == "bad_json":
            return {"payload": '{"frame_id": "' + str(fields["frame_id"]) + '", "camera_id": '}
        elif kind == "negative_width":
            fields["width"] = "-320"
        else:
            fields["capabilities"] = "motion detection!"
        return fields


async def capture(
    redis: aioredis.Redis,
    stream: str,
    config: CaptureConfig,
    stop: asyncio.Event | None = None,
    camera_prefix: str = "cam",
) -> int:
    """Write frames on schedule until ``duration`` is over or ``stop`` is set; returns entries written."""
    config.validate()
    stop = stop or asyncio.Event()
    rng = random.Random(config.seed)
    cameras = [
        _Camera(
            f"{camera_prefix}-{i:03d}",
            config.priority if config.priority is not None else rng.randint(0, 9),
            rng.randrange(256),
        )
        for i in range(config.cameras)
    ]
    writer = _Writer(stream, config, rng)
    total = config.frames_per_camera
    loop = asyncio.get_running_loop()
    start = loop.time()
    wall_start = time.time()
    done = 0  # frames written per camera; all cameras share one schedule
    while not stop.is_set() and (total is None or done < total):
        due = math.floor((loop.time() - start) * config.fps) + 1
        if total is not None:
            due = min(due, total)
        if due > done:
            async with redis.pipeline(transaction=False) as pipe:
                for index in range(done, due):
                    captured_at = wall_start + index / config.fps
                    for camera in cameras:
                        writer.add(pipe, camera, captured_at)
                await pipe.execute()
            done = due
        if total is not None and done >= total:
            break
        next_due = start + done / config.fps
        wake = max(next_due, loop.time() + 1.0 / MAX_TICK_HZ) if next_due > loop.time() else loop.time()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, wake - loop.time())):
                await stop.wait()
    written = done * len(cameras)
    elapsed = loop.time() - start
    log.info(
        "capture: %d entries (%d malformed) from %d cameras in %.1f s (%.0f entries/s) into %s",
        written,
        writer.malformed,
        len(cameras),
        elapsed,
        written / elapsed if elapsed > 0 else 0.0,
        stream,
    )
    return written


def run_capture(
    settings: Settings,
    cameras: int,
    fps: float,
    duration: float | None,
    width: int = 320,
    height: int = 240,
    capabilities: list[str] | None = None,
    priority: int | None = None,
    malformed_ratio: float = 0.0,
    seed: int | None = None,
    maxlen: int | None = None,
) -> int:
    """The capture process: write until ``duration`` is over (None: until SIGTERM/SIGINT); entries written."""
    setup_logging(settings.log_level)
    config = CaptureConfig(
        cameras=cameras,
        fps=fps,
        duration=duration,
        width=width,
        height=height,
        capabilities=capabilities,
        priority=priority,
        malformed_ratio=malformed_ratio,
        seed=seed,
        frame_ttl=settings.frame_ttl_seconds,
        maxlen=maxlen,
    )
    config.validate()
    return asyncio.run(_capture_until_signalled(settings, config))


async def _capture_until_signalled(settings: Settings, config: CaptureConfig) -> int:
    stop = asyncio.Event()
    redis = settings.redis.client()
    try:
        with stop_on_signals(stop.set, "capture", settings.shutdown_grace_seconds):
            return await capture(redis, settings.capture_stream, config, stop)
    finally:
        await redis.aclose()
