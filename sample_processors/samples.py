"""The sample processors on the SDK, and ``run_sample`` that runs one as a service.

* ``brightness``: mean brightness and a motion score (mean absolute difference from the
  previous frame of the same camera) of the frame's intensities (gray8, bgr24, rgb24, jpeg,
  png). Stateful: needs each camera's frames in order.
* ``object_detection``: people, with OpenCV's HOG detector (``sample_processors.detectors``).
* ``face_detection``: faces, with OpenCV's Haar cascade (``sample_processors.detectors``).
* ``detector``: a load-test stand-in with a configurable latency and a fake, deterministic
  detection list derived from the pixels' hash: it costs no CPU, so benchmarks and failure
  tests measure the orchestrator, not a model.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict
from typing import Any

import numpy as np
import numpy.typing as npt

from frame_buffer_sdk.client import ProcessorClient
from frame_buffer_sdk.frame import Frame, ProcessFn
from frame_buffer_sdk.keys import detections_field, latest_detections_key
from frame_buffer_sdk.latest import RecordLatest
from frame_buffer_sdk.logs import setup_logging
from frame_buffer_sdk.settings import ProcessorSettings
from frame_buffer_sdk.telemetry import setup_tracing
from sample_processors.detectors import FaceDetector, PeopleDetector
from sample_processors.images import to_gray

log = logging.getLogger(__name__)

DETECTION_LABELS = ("person", "car", "bicycle", "truck", "dog", "bag")
SAMPLE_KINDS = ("brightness", "detector", "object_detection", "face_detection")
_DEFAULTS: dict[str, dict[str, Any]] = {
    "brightness": {"capabilities": ["brightness", "motion"], "capacity": 500, "latency_ms": 0.0},
    "detector": {"capabilities": ["object_detection"], "capacity": 100, "latency_ms": 20.0},
    # The models cost tens of ms of CPU a frame: a small backlog, and two frames at once.
    "object_detection": {"capabilities": ["object_detection"], "capacity": 50, "concurrency": 2},
    "face_detection": {"capabilities": ["face_detection"], "capacity": 50, "concurrency": 2},
}

Gray = npt.NDArray[np.uint8]


def gray8(frame: Frame) -> Gray:
    """The frame's intensities as a height x width uint8 image, or RejectFrame saying why not."""
    return to_gray(frame)


def brightness(image: Gray) -> float:
    """Mean intensity, 0 (black) to 255 (white)."""
    return float(image.mean(dtype=np.float64))


def motion(previous: Gray, current: Gray) -> float:
    """Mean absolute per-pixel difference, 0 (still) to 255."""
    diff = np.abs(current.astype(np.int16) - previous.astype(np.int16))
    return float(diff.mean(dtype=np.float64))


class BrightnessMotion:
    """Brightness and motion per frame; remembers the last frame of up to ``max_cameras``
    cameras (least recently seen forgotten first), so memory stays bounded."""

    def __init__(self, max_cameras: int = 1024) -> None:
        if max_cameras < 1:
            raise ValueError("max_cameras must be >= 1")
        self.max_cameras = max_cameras
        self._previous: OrderedDict[str, Gray] = OrderedDict()

    async def __call__(self, frame: Frame) -> dict[str, Any]:
        image = gray8(frame)
        previous = self._previous.pop(frame.camera_id, None)
        # A first frame, or a resolution change, has nothing to compare with.
        score = motion(previous, image) if previous is not None and previous.shape == image.shape else None
        self._previous[frame.camera_id] = image
        while len(self._previous) > self.max_cameras:
            self._previous.popitem(last=False)
        return {"brightness": round(brightness(image), 3), "motion": None if score is None else round(score, 3)}


def fake_detections(pixels: bytes, width: int, height: int, max_detections: int = 4) -> list[dict[str, Any]]:
    """A deterministic stand-in for a detector's output: same pixels, same detections."""
    digest = hashlib.sha256(pixels).digest()
    count = digest[0] % (max_detections + 1)
    width, height = max(width, 1), max(height, 1)
    out: list[dict[str, Any]] = []
    for i in range(count):
        b = digest[1 + 6 * i : 7 + 6 * i]
        x, y = b[0] * width // 256, b[1] * height // 256
        w = max(1, b[2] * (width - x) // 256)
        h = max(1, b[3] * (height - y) // 256)
        out.append(
            {
                "label": DETECTION_LABELS[b[4] % len(DETECTION_LABELS)],
                "confidence": round(0.5 + b[5] / 510, 3),
                "box": [x, y, w, h],
            }
        )
    return out


class FakeDetector:
    """Takes ``latency_ms`` per frame (awaited, so ``concurrency`` frames overlap) and
    returns ``fake_detections`` of the pixels."""

    def __init__(self, latency_ms: float = 20.0) -> None:
        if latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")
        self.latency_ms = latency_ms

    async def __call__(self, frame: Frame) -> dict[str, Any]:
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000)
        detections = fake_detections(frame.pixels, frame.routed.width or 0, frame.routed.height or 0)
        return {"detections": detections, "count": len(detections)}


def build_sample(
    settings: ProcessorSettings,
    kind: str,
    processor_id: str | None = None,
    capabilities: list[str] | None = None,
    capacity: int | None = None,
    latency_ms: float | None = None,
    concurrency: int | None = None,
) -> ProcessorClient:
    """A ProcessorClient running sample ``kind``; None arguments take the sample's defaults."""
    if kind not in SAMPLE_KINDS:
        raise ValueError(f"unknown sample processor {kind!r}; choose from {', '.join(SAMPLE_KINDS)}")
    if latency_ms is not None and kind != "detector":
        raise ValueError(f"latency_ms simulates work: only the detector stand-in takes it, not {kind!r}")
    defaults = _DEFAULTS[kind]
    latency = defaults.get("latency_ms", 0.0) if latency_ms is None else latency_ms
    process: ProcessFn
    if kind == "brightness":
        process = BrightnessMotion()
    elif kind in ("object_detection", "face_detection"):
        detector = PeopleDetector() if kind == "object_detection" else FaceDetector()
        # Their latest boxes per camera, for the dashboard's camera grid.
        redis = settings.redis.client(socket_timeout=5)
        process = RecordLatest(detector, redis, latest_detections_key(settings.app_id), detections_field)
    else:
        process = FakeDetector(latency)
    metadata: dict[str, Any] = {"sample": kind}
    if kind == "detector":
        metadata["latency_ms"] = latency
    return ProcessorClient(
        settings,
        processor_id or f"{kind}-1",
        capabilities or list(defaults["capabilities"]),
        process,
        capacity=capacity or defaults["capacity"],
        stateful=kind == "brightness",
        concurrency=concurrency or defaults.get("concurrency", 1 if kind == "brightness" else 8),
        metadata=metadata,
    )


def run_sample(
    settings: ProcessorSettings,
    kind: str,
    processor_id: str | None = None,
    capabilities: list[str] | None = None,
    capacity: int | None = None,
    latency_ms: float | None = None,
    concurrency: int | None = None,
) -> None:
    """Run sample ``kind`` until SIGTERM/SIGINT (then drain and deregister). Blocking."""
    setup_logging(settings.log_level)
    client = build_sample(settings, kind, processor_id, capabilities, capacity, latency_ms, concurrency)
    setup_tracing(
        settings.service_name("processor"), settings.otel_exporter_otlp_endpoint, settings.otel_sampling_ratio
    )
    log.info("starting sample processor %s (%s) for %s", client.processor_id, kind, client.spec.capabilities)
    client.run_sync()
