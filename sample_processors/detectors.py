"""Real detectors on the SDK: people with OpenCV's HOG detector, faces with its Haar cascade.

Both models ship inside opencv-python-headless (``cv2.HOGDescriptor.getDefaultPeopleDetector``
and ``cv2.data.haarcascades``): nothing is downloaded at run time. Each call returns
``{"detections": [{"label", "score", "box": [x, y, w, h]}], "count"}`` in the frame's own
pixel coordinates. The model runs in a worker thread (``asyncio.to_thread``), so a 50 ms
detection never stalls the SDK's fetching, heartbeats or commits; each thread keeps its own
model, because OpenCV does not promise that one cascade may be used by two threads at once.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import cv2
import cv2.data
import numpy as np

from frame_buffer_sdk.frame import Frame
from sample_processors.images import Image, to_bgr, to_gray

# Frames wider than this are scaled down before detection: HOG's cost grows with the
# pixel count, and a 1080p frame would take a second of CPU for boxes a 640-wide one finds.
DEFAULT_MAX_WIDTH = 640
FACE_CASCADE = "haarcascade_frontalface_default.xml"


def _scaled(image: Image, max_width: int) -> tuple[Image, float]:
    """The image at most ``max_width`` wide, and the factor that maps its boxes back."""
    width = image.shape[1]
    if width <= max_width:
        return image, 1.0
    factor = width / max_width
    size = (max_width, max(1, round(image.shape[0] / factor)))
    return np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), dtype=np.uint8), factor


def _detections(label: str, boxes: Any, scores: Any, factor: float) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {
            "label": label,
            "score": round(float(score), 3),
            "box": [round(float(v) * factor) for v in box],
        }
        for box, score in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(scores).reshape(-1), strict=True)
    ]
    out.sort(key=lambda d: -float(d["score"]))
    return out


class PeopleDetector:
    """People (label ``person``) with the HOG + linear SVM pedestrian detector.

    ``score`` is the SVM's margin: above 0 is a person, larger is surer. ``min_score``
    drops weak hits, which HOG produces on busy backgrounds.
    """

    def __init__(self, max_width: int = DEFAULT_MAX_WIDTH, min_score: float = 0.3) -> None:
        if max_width < 64:
            raise ValueError("max_width must be >= 64 (HOG's window is 64x128)")
        self.max_width = max_width
        self.min_score = min_score
        self._local = threading.local()

    def _hog(self) -> cv2.HOGDescriptor:
        hog: cv2.HOGDescriptor | None = getattr(self._local, "hog", None)
        if hog is None:
            hog = cv2.HOGDescriptor()
            hog.setSVMDetector(np.asarray(cv2.HOGDescriptor.getDefaultPeopleDetector(), dtype=np.float32))
            self._local.hog = hog
        return hog

    def detect(self, image: Image) -> list[dict[str, Any]]:
        """Blocking: call it from a worker thread."""
        small, factor = _scaled(image, self.max_width)
        boxes, weights = self._hog().detectMultiScale(small, winStride=(8, 8), padding=(8, 8), scale=1.05)
        found = _detections("person", boxes, weights, factor)
        return [d for d in found if d["score"] >= self.min_score]

    async def __call__(self, frame: Frame) -> dict[str, Any]:
        image = to_bgr(frame)
        detections = await asyncio.to_thread(self.detect, image)
        return {"detections": detections, "count": len(detections)}


class FaceDetector:
    """Frontal faces (label ``face``) with the Viola-Jones Haar cascade.

    ``score`` is the cascade's level weight of the last stage: larger is surer.
    """

    def __init__(self, max_width: int = DEFAULT_MAX_WIDTH, min_neighbors: int = 5, min_size: int = 24) -> None:
        self.max_width = max_width
        self.min_neighbors = min_neighbors
        self.min_size = min_size
        self.cascade_path = str(Path(cv2.data.haarcascades) / FACE_CASCADE)
        if cv2.CascadeClassifier(self.cascade_path).empty():
            raise RuntimeError(f"OpenCV's face cascade is missing or unreadable at {self.cascade_path}")
        self._local = threading.local()

    def _cascade(self) -> cv2.CascadeClassifier:
        cascade: cv2.CascadeClassifier | None = getattr(self._local, "cascade", None)
        if cascade is None:
            cascade = cv2.CascadeClassifier(self.cascade_path)
            self._local.cascade = cascade
        return cascade

    def detect(self, gray: Image) -> list[dict[str, Any]]:
        """Blocking: call it from a worker thread."""
        small, factor = _scaled(gray, self.max_width)
        equalized = cv2.equalizeHist(small)
        boxes, _levels, weights = self._cascade().detectMultiScale3(
            equalized,
            scaleFactor=1.1,
            minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size),
            outputRejectLevels=True,
        )
        return _detections("face", boxes, weights, factor)

    async def __call__(self, frame: Frame) -> dict[str, Any]:
        gray = to_gray(frame)
        detections = await asyncio.to_thread(self.detect, gray)
        return {"detections": detections, "count": len(detections)}
