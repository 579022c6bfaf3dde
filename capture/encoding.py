"""How a frame's pixels are stored under its claim-check key: the entry's ``format`` names it."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

FORMATS = ("bgr24", "jpeg")
DEFAULT_JPEG_QUALITY = 90


def encode(image: npt.NDArray[np.uint8], fmt: str, jpeg_quality: int = DEFAULT_JPEG_QUALITY) -> bytes:
    """``bgr24``: the height x width x 3 bytes as they are; ``jpeg``: OpenCV's JPEG of them."""
    if fmt == "bgr24":
        return bytes(np.ascontiguousarray(image).tobytes())
    if fmt == "jpeg":
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        if not ok:
            raise ValueError(f"OpenCV could not encode a {image.shape} image as JPEG")
        return bytes(data.tobytes())
    raise ValueError(f"unknown pixel format {fmt!r}; choose from {', '.join(FORMATS)}")
