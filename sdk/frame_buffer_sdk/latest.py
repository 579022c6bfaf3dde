"""Notes each camera's latest detections in Redis, for the dashboard's camera grid.

One hash field per camera and capability, overwritten per frame (see ``frame_buffer_sdk.keys``):
the grid draws the boxes over the camera's thumbnail and shows the fps out and the latency.
Best effort: a Redis error is logged and the frame's result goes on unchanged.
"""

from __future__ import annotations

import collections
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from frame_buffer_sdk.frame import Frame, ProcessFn

log = logging.getLogger(__name__)

FPS_WINDOW_SECONDS = 5.0
MAX_CAMERAS = 1024


class RecordLatest:
    """Wraps ``process``: after each frame, HSETs ``{frame_id, detections, fps_out, latency_s, ...}``."""

    def __init__(
        self,
        process: ProcessFn,
        redis: aioredis.Redis,
        key: str,
        field_of: Callable[[str, str], str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.process = process
        self.redis = redis
        self.key = key
        self.field_of = field_of
        self.clock = clock
        self._times: collections.OrderedDict[str, collections.deque[float]] = collections.OrderedDict()

    def _fps(self, camera_id: str, now: float) -> float:
        times = self._times.pop(camera_id, None) or collections.deque()
        times.append(now)
        while times and times[0] < now - FPS_WINDOW_SECONDS:
            times.popleft()
        self._times[camera_id] = times
        while len(self._times) > MAX_CAMERAS:
            self._times.popitem(last=False)
        span = times[-1] - times[0]
        return (len(times) - 1) / span if span > 0 else 0.0

    async def __call__(self, frame: Frame) -> dict[str, Any]:
        result = await self.process(frame)
        now = self.clock()
        record = {
            "frame_id": frame.frame_id,
            "capability": frame.capability,
            "detections": result.get("detections", []),
            "width": frame.routed.width,
            "height": frame.routed.height,
            "processed_at": now,
            "latency_s": round(now - frame.routed.captured_at.timestamp(), 4),
            "fps_out": round(self._fps(frame.camera_id, now), 2),
        }
        try:
            await self.redis.hset(self.key, self.field_of(frame.camera_id, frame.capability), json.dumps(record))
        except (RedisError, OSError) as exc:
            log.warning("latest detections of %s not noted: %s", frame.camera_id, exc)
        return result
