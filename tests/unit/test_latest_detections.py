"""RecordLatest: what it notes for the camera grid, and that a Redis outage never costs a frame its result."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

from frame_buffer_sdk.frame import Frame
from frame_buffer_sdk.keys import detections_field
from frame_buffer_sdk.latest import RecordLatest
from frame_buffer_sdk.models import RoutedFrame

T0 = datetime(2026, 12, 1, 20, 0, tzinfo=UTC)


class NotingRedis:
    """Only the one call RecordLatest makes; ``down`` makes it fail as a lost connection does."""

    def __init__(self, down: bool = False) -> None:
        self.down = down
        self.hashes: dict[str, dict[str, Any]] = {}

    async def hset(self, key: str, field: str, value: str) -> int:
        if self.down:
            raise RedisConnectionError("Connection refused")
        self.hashes.setdefault(key, {})[field] = json.loads(value)
        return 1


def frame(n: int, camera: str = "gate") -> Frame:
    captured = T0 + timedelta(seconds=n * 0.5)
    routed = RoutedFrame(
        frame_id=f"f-{n}",
        camera_id=camera,
        captured_at=captured,
        width=640,
        height=480,
        format="jpeg",
        processor_id="people",
        capability="object_detection",
        routed_at=captured,
    )
    return Frame(routed, b"", 0, n)


async def detect(frame: Frame) -> dict[str, Any]:
    return {"detections": [{"label": "person", "score": 0.9, "box": [1, 2, 3, 4]}], "count": 1}


async def test_notes_latest_boxes_latency_and_fps_out_per_camera() -> None:
    redis = NotingRedis()
    now = [T0.timestamp()]
    record = RecordLatest(detect, redis, "k", detections_field, clock=lambda: now[0])  # type: ignore[arg-type]
    for n in range(5):  # two frames a second, each processed 0.25 s after capture
        now[0] = T0.timestamp() + n * 0.5 + 0.25
        assert (await record(frame(n)))["count"] == 1
    noted = redis.hashes["k"]["gate/object_detection"]
    assert noted["frame_id"] == "f-4"
    assert noted["detections"] == [{"label": "person", "score": 0.9, "box": [1, 2, 3, 4]}]
    assert noted["latency_s"] == 0.25
    assert noted["fps_out"] == 2.0
    assert (noted["width"], noted["height"]) == (640, 480)


async def test_a_redis_outage_leaves_the_result_as_it_was() -> None:
    record = RecordLatest(detect, NotingRedis(down=True), "k", detections_field)  # type: ignore[arg-type]
    assert await record(frame(0)) == await detect(frame(0))
