"""The sample processors on known pixel arrays."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import cv2
import numpy as np
import pytest

from core.settings import Settings
from frame_buffer_sdk.frame import Frame, RejectFrame
from frame_buffer_sdk.models import RoutedFrame
from sample_processors.samples import BrightnessMotion, FakeDetector, build_sample, gray8


def _frame(pixels: bytes, camera: str = "cam-1", width: int = 4, height: int = 2, **extra: Any) -> Frame:
    now = datetime.now(UTC)
    routed = RoutedFrame(
        frame_id=f"{camera}-{len(pixels)}-{pixels[:4].hex()}",
        camera_id=camera,
        captured_at=now,
        width=width,
        height=height,
        format=extra.pop("format", "gray8"),
        processor_id="p",
        capability="brightness",
        routed_at=now,
        **extra,
    )
    return Frame(routed, pixels, partition=0, offset=0)


async def test_brightness_is_the_mean_and_motion_the_mean_abs_diff_per_camera() -> None:
    process = BrightnessMotion()
    first = np.array([[0, 10, 20, 30], [40, 50, 60, 250]], dtype=np.uint8)
    second = np.array([[10, 0, 20, 30], [40, 50, 60, 0]], dtype=np.uint8)

    one = await process(_frame(first.tobytes()))
    assert one == {"brightness": 57.5, "motion": None}  # (0+10+...+250)/8; nothing to compare yet

    two = await process(_frame(second.tobytes()))
    # |10-0| + |0-10| + |0-250| = 270 over 8 pixels; no uint8 wrap-around.
    assert two == {"brightness": 26.25, "motion": 33.75}

    # Another camera has its own history.
    other = await process(_frame(second.tobytes(), camera="cam-2"))
    assert other["motion"] is None


async def test_motion_history_is_bounded_and_forgets_least_recent_camera() -> None:
    process = BrightnessMotion(max_cameras=2)
    frame = np.full((2, 4), 100, dtype=np.uint8).tobytes()
    for camera in ("a", "b", "a", "c"):  # "b" is now the least recently seen
        await process(_frame(frame, camera=camera))
    assert (await process(_frame(frame, camera="a")))["motion"] == 0.0
    assert (await process(_frame(frame, camera="b")))["motion"] is None


async def test_resolution_change_restarts_motion() -> None:
    process = BrightnessMotion()
    await process(_frame(bytes(8), width=4, height=2))
    result = await process(_frame(bytes(8), width=2, height=4))
    assert result["motion"] is None


@pytest.mark.parametrize(
    ("pixels", "fmt", "reason"),
    [
        (bytes(7), "gray8", "invalid_pixels"),
        (bytes(8), "yuv420p", "unsupported_format"),
        (bytes(8), "jpeg", "invalid_pixels"),
        (bytes(8 * 3 - 1), "bgr24", "invalid_pixels"),
    ],
)
def test_gray8_rejects_what_it_cannot_read(pixels: bytes, fmt: str, reason: str) -> None:
    with pytest.raises(RejectFrame) as info:
        gray8(_frame(pixels, format=fmt))
    assert info.value.reason == reason


def test_gray8_shape_is_height_by_width() -> None:
    image = gray8(_frame(bytes(range(8)), width=4, height=2))
    assert image.shape == (2, 4)
    assert image[1, 0] == 4


async def test_brightness_reads_colour_and_jpeg_frames_of_real_cameras() -> None:
    # Pure blue, green and red: BT.601 weights them 0.114, 0.587 and 0.299.
    bgr = np.zeros((2, 3, 3), dtype=np.uint8)
    for channel in range(3):
        bgr[:, channel, channel] = 255
    process = BrightnessMotion()
    first = await process(_frame(bgr.tobytes(), width=3, height=2, format="bgr24"))
    assert first["brightness"] == pytest.approx(255 * (0.114 + 0.587 + 0.299) / 3, abs=0.5)
    rgb = await BrightnessMotion()(_frame(bgr[:, :, ::-1].tobytes(), width=3, height=2, format="rgb24"))
    assert rgb["brightness"] == first["brightness"]
    ok, jpeg = cv2.imencode(".jpg", np.full((16, 16, 3), 200, dtype=np.uint8))
    assert ok
    encoded = await process(_frame(jpeg.tobytes(), width=16, height=16, format="jpeg", camera="cam-2"))
    assert encoded["brightness"] == pytest.approx(200, abs=2)


async def test_detector_is_deterministic_and_depends_on_pixels() -> None:
    detector = FakeDetector(latency_ms=0)
    rng = np.random.default_rng(7)
    images = [rng.integers(0, 256, size=64 * 48, dtype=np.uint8).tobytes() for _ in range(40)]
    results = [await detector(_frame(image, width=64, height=48)) for image in images]
    again = [await detector(_frame(image, width=64, height=48)) for image in images]
    assert results == again
    counts = {r["count"] for r in results}
    assert len(counts) > 1, "detections must vary with the pixels"
    for result in results:
        assert result["count"] == len(result["detections"])
        for det in result["detections"]:
            x, y, w, h = det["box"]
            assert min(x, y) >= 0 and min(w, h) >= 1
            assert x + w <= 64 and y + h <= 48
            assert 0.5 <= det["confidence"] <= 1.0


def test_build_sample_defaults_and_overrides() -> None:
    settings = Settings()
    brightness = build_sample(settings, "brightness")
    assert brightness.spec.id == "brightness-1"
    assert brightness.spec.capabilities == ["brightness", "motion"]
    assert brightness.spec.stateful is True
    detector = build_sample(settings, "detector", "det-9", ["faces"], capacity=7, latency_ms=3, concurrency=2)
    assert (detector.spec.id, detector.spec.capabilities, detector.spec.capacity) == ("det-9", ["faces"], 7)
    assert detector.concurrency == 2 and detector.spec.stateful is False
    with pytest.raises(ValueError, match="unknown sample"):
        build_sample(settings, "nope")
    people = build_sample(settings, "object_detection")
    faces = build_sample(settings, "face_detection", "faces-2")
    assert (people.spec.id, people.spec.capabilities) == ("object_detection-1", ["object_detection"])
    assert (faces.spec.id, faces.spec.capabilities) == ("faces-2", ["face_detection"])
    assert people.concurrency == faces.concurrency == 2
    with pytest.raises(ValueError, match="only the detector"):
        build_sample(settings, "face_detection", latency_ms=5)


def test_sdk_imports_nothing_of_the_orchestrator() -> None:
    code = (
        "import importlib, pkgutil, sys, frame_buffer_sdk\n"
        "for m in pkgutil.walk_packages(frame_buffer_sdk.__path__, 'frame_buffer_sdk.'):\n"
        "    importlib.import_module(m.name)\n"
        "import sample_processors.samples, sample_processors.__main__\n"
        "own = ('app', 'agents', 'tables', 'bridge', 'capture', 'migrate', 'relay', 'bench')\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('faust', 'rocksdict', 'mode', *own)]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_pixels_gone_after_the_capture_ttl_are_reported_as_expired() -> None:
    from frame_buffer_sdk.pixels import missing_pixels

    assert missing_pixels("frame:f1", 400.0, 300)[0] == "pixels_expired"
    assert "FRAME_TTL_SECONDS (300 s)" in missing_pixels("frame:f1", 400.0, 300)[1]
    assert missing_pixels("frame:f1", 10.0, 300) == ("pixels_missing", "no pixels under key 'frame:f1'")
    assert missing_pixels(None, 400.0, 300) == ("pixels_missing", "frame has no frame_key")
