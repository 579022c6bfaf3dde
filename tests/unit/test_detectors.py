"""The OpenCV detectors on real pictures: a photograph with a face, drawn people, and empty frames."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import cv2
import numpy as np
import pytest
from matplotlib import cbook

from capture.demo import draw_figure
from frame_buffer_sdk.frame import Frame
from frame_buffer_sdk.models import RoutedFrame
from sample_processors.detectors import FaceDetector, PeopleDetector
from sample_processors.images import Image

# Grace Hopper's portrait ships with matplotlib (512x600); her face spans about x 150-380, y 100-330.
HOPPER = str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
FACE_CENTRE = (265, 215)
BACKGROUND = 200


def frame_of(image: Image, fmt: str = "bgr24") -> Frame:
    now = datetime.now(UTC)
    if fmt == "jpeg":
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        pixels = encoded.tobytes()
    else:
        pixels = image.tobytes()
    routed = RoutedFrame(
        frame_id="f-1",
        camera_id="cam-1",
        captured_at=now,
        width=image.shape[1],
        height=image.shape[0],
        format=fmt,
        processor_id="p",
        capability="object_detection",
        routed_at=now,
    )
    return Frame(routed, pixels, partition=0, offset=0)


def hopper() -> Image:
    image = cv2.imread(HOPPER)
    assert image is not None and image.shape == (600, 512, 3)
    return np.asarray(image, dtype=np.uint8)


def draw_person(canvas: Image, centre_x: int, top: int, height: int = 200) -> tuple[int, int]:
    """The demo video's standing figure (capture.demo), ``height`` pixels tall; returns its centre."""
    draw_figure(canvas, centre_x, top, height)
    return centre_x, top + height // 2


def centre(box: list[int]) -> tuple[float, float]:
    x, y, w, h = box
    return x + w / 2, y + h / 2


def near(a: tuple[float, float], b: tuple[float, float], within: float) -> bool:
    return abs(a[0] - b[0]) <= within and abs(a[1] - b[1]) <= within


@pytest.mark.parametrize("fmt", ["bgr24", "jpeg"])
async def test_finds_grace_hoppers_face_where_it_is(fmt: str) -> None:
    result = await FaceDetector()(frame_of(hopper(), fmt))
    assert result["count"] == len(result["detections"]) == 1, result
    face = result["detections"][0]
    assert face["label"] == "face" and face["score"] > 0
    assert near(centre(face["box"]), FACE_CENTRE, 30), face
    assert 180 <= face["box"][2] <= 280, face


async def test_face_boxes_of_a_large_frame_are_in_its_own_pixels() -> None:
    # Twice the size: scaled down to 640 wide for the cascade, the box must come back doubled.
    big = np.asarray(cv2.resize(hopper(), (1024, 1200)), dtype=np.uint8)
    result = await FaceDetector()(frame_of(big))
    assert result["count"] == 1, result
    assert near(centre(result["detections"][0]["box"]), (FACE_CENTRE[0] * 2, FACE_CENTRE[1] * 2), 60), result


@pytest.mark.parametrize(("centre_x", "top"), [(120, 60), (300, 100), (480, 40), (200, 200)])
async def test_finds_a_person_where_it_stands(centre_x: int, top: int) -> None:
    canvas = np.full((480, 640, 3), BACKGROUND, dtype=np.uint8)
    where = draw_person(canvas, centre_x, top)
    result = await PeopleDetector()(frame_of(canvas))
    assert result["count"] == 1, result
    person = result["detections"][0]
    assert person["label"] == "person" and person["score"] >= 0.3
    assert near(centre(person["box"]), where, 25), (person, where)
    assert 150 <= person["box"][3] <= 320, person  # about the figure's 200 pixels, with HOG's margin


@pytest.mark.parametrize("detector", [PeopleDetector(), FaceDetector()], ids=["people", "faces"])
async def test_nothing_found_in_frames_without_anyone(detector: Any) -> None:
    flat = np.full((480, 640, 3), BACKGROUND, dtype=np.uint8)
    gradient = np.repeat(np.linspace(0, 255, 640, dtype=np.uint8)[None, :, None], 480, axis=0).repeat(3, axis=2)
    for image in (flat, np.ascontiguousarray(gradient)):
        assert await detector(frame_of(image)) == {"detections": [], "count": 0}


async def test_the_face_cascade_finds_no_face_on_a_drawn_person_nor_hog_a_person_in_a_portrait() -> None:
    canvas = np.full((480, 640, 3), BACKGROUND, dtype=np.uint8)
    draw_person(canvas, 320, 100)
    assert (await FaceDetector()(frame_of(canvas)))["count"] == 0
    assert (await PeopleDetector()(frame_of(hopper())))["count"] == 0


async def test_the_model_runs_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    detector = PeopleDetector()

    def slow(image: Image) -> list[dict[str, Any]]:
        time.sleep(0.3)
        return []

    monkeypatch.setattr(detector, "detect", slow)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    await detector(frame_of(np.zeros((128, 64, 3), dtype=np.uint8)))
    ticker.cancel()
    assert ticks >= 10  # a blocking call would have let the ticker run not once
