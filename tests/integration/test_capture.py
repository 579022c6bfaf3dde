"""The synthetic capture against a real Redis: counts, pixels with TTL, entries the bridge can parse."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import redis
import redis.asyncio as aioredis

from core.parsing import parse_entry
from core.settings import Settings
from devtools.synthetic_capture import FORMAT, CaptureConfig, capture, run_capture

pytestmark = pytest.mark.integration

MakeSettings = Callable[..., Settings]


def stream_entries(client: redis.Redis, stream: str) -> list[tuple[str, dict[bytes, bytes]]]:
    raw: Any = client.xrange(stream)
    return [(sid.decode(), fields) for sid, fields in raw]


def pixels_of(client: redis.Redis, key: str | None) -> bytes:
    assert key
    value: Any = client.get(key)
    assert isinstance(value, bytes)
    return value


@pytest.fixture
def sync_redis(make_settings: MakeSettings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(make_settings().redis_url)
    yield client
    client.close()


def test_run_capture_writes_the_schedule(make_settings: MakeSettings, sync_redis: redis.Redis) -> None:
    settings = make_settings(frame_ttl_seconds=120)
    cameras, fps, duration = 3, 20.0, 1.0
    started = time.monotonic()
    written = run_capture(
        settings, cameras=cameras, fps=fps, duration=duration, width=32, height=24, capabilities=["motion", "faces"]
    )
    elapsed = time.monotonic() - started
    assert written == cameras * round(fps * duration) == 60
    assert elapsed >= duration - 1 / fps  # paced to the schedule, not written in one burst

    entries = stream_entries(sync_redis, settings.capture_stream)
    assert len(entries) == written
    by_camera: dict[str, list[tuple[int, float]]] = defaultdict(list)
    frames = []
    for stream_id, fields in entries:
        outcome = parse_entry(fields, stream_id)
        assert outcome.frame is not None, outcome.error
        frame = outcome.frame
        frames.append(frame)
        assert (frame.width, frame.height, frame.format, frame.size_bytes) == (32, 24, FORMAT, 32 * 24)
        assert frame.capabilities == ["motion", "faces"]
        assert frame.traceparent is not None and len(frame.traceparent.split("-")) == 4
        assert 0 <= frame.priority <= 9
        assert frame.sequence is not None and frame.frame_key
        by_camera[frame.camera_id].append((frame.sequence, frame.captured_at.timestamp()))
        assert len(pixels_of(sync_redis, frame.frame_key)) == 32 * 24
        assert 0 < sync_redis.ttl(frame.frame_key) <= 120
    assert len({f.frame_id for f in frames}) == written
    assert len({f.traceparent for f in frames}) == written
    assert len(by_camera) == cameras
    for series in by_camera.values():
        assert [seq for seq, _ in series] == list(range(20))
        gaps = np.diff([ts for _, ts in series])
        assert np.allclose(gaps, 1 / fps, atol=1e-3)  # timestamps follow the schedule exactly

    # Consecutive frames of a camera differ (motion) and brightness moves over time.
    first = [f for f in frames if f.camera_id == frames[0].camera_id]
    images = [np.frombuffer(pixels_of(sync_redis, f.frame_key), dtype=np.uint8) for f in first]
    assert all((a != b).any() for a, b in itertools.pairwise(images)), [
        int((a != b).sum()) for a, b in itertools.pairwise(images)
    ]
    assert len({round(float(img.mean())) for img in images}) > 3


def test_priority_and_malformed_entries(make_settings: MakeSettings, sync_redis: redis.Redis) -> None:
    settings = make_settings()
    written = run_capture(
        settings, cameras=4, fps=50, duration=0.5, width=8, height=8, priority=9, malformed_ratio=0.3, seed=11
    )
    assert written == 100
    entries = stream_entries(sync_redis, settings.capture_stream)
    assert len(entries) == written
    outcomes = [parse_entry(fields, sid) for sid, fields in entries]
    bad = [o for o in outcomes if o.error is not None]
    good = [o.frame for o in outcomes if o.frame is not None]
    assert 10 <= len(bad) <= 50  # 30 % of 100, give or take the dice
    assert {o.error.reason for o in bad if o.error} <= {"missing_field", "invalid_field", "invalid_json"}
    assert all(f.priority == 9 for f in good)
    assert all(f.capabilities == [] for f in good)  # none given: the router's defaults apply
    assert all(sync_redis.exists(f.frame_key) for f in good if f.frame_key)


def test_same_seed_same_defects(make_settings: MakeSettings, sync_redis: redis.Redis, unique: str) -> None:
    def reasons(settings: Settings) -> list[str | None]:
        run_capture(settings, cameras=2, fps=100, duration=0.2, width=4, height=4, malformed_ratio=0.5, seed=3)
        outcomes = [parse_entry(f) for _, f in stream_entries(sync_redis, settings.capture_stream)]
        return [o.error.reason if o.error else None for o in outcomes]

    first = reasons(make_settings(capture_stream=f"cap:a:{unique}"))
    assert first == reasons(make_settings(capture_stream=f"cap:b:{unique}"))
    assert None in first and any(first)  # both kinds present: the comparison means something


async def test_async_core_runs_until_stopped(make_settings: MakeSettings) -> None:
    settings = make_settings()
    client = aioredis.from_url(settings.redis_url)
    stop = asyncio.Event()
    config = CaptureConfig(cameras=5, fps=100, duration=None, width=4, height=4)
    try:
        task = asyncio.create_task(capture(client, settings.capture_stream, config, stop))
        await asyncio.sleep(0.5)
        stop.set()
        written = await asyncio.wait_for(task, 5)
        assert written > 0 and written % 5 == 0
        assert await client.xlen(settings.capture_stream) == written
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    "bad",
    [
        {"cameras": 0},
        {"fps": 0},
        {"duration": -1},
        {"width": 0},
        {"malformed_ratio": 1.5},
        {"priority": 11},
        {"capabilities": ["no spaces"]},
    ],
)
def test_bad_arguments_are_refused_before_writing(make_settings: MakeSettings, bad: dict[str, object]) -> None:
    args: dict[str, object] = {"cameras": 1, "fps": 1.0, "duration": 0.1, **bad}
    with pytest.raises(ValueError):
        run_capture(make_settings(), **args)  # type: ignore[arg-type]
