"""A frame's pixel bytes as an image, in every format the capture services write.

Raw formats (``bgr24``, ``rgb24``, ``gray8``) need the frame's width and height; encoded
ones (``jpeg``, ``png``) carry their own. A frame that cannot be read raises RejectFrame
(``unsupported_format`` or ``invalid_pixels``), so the SDK dead-letters it with the reason.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from frame_buffer_sdk.frame import Frame, RejectFrame

Image = npt.NDArray[np.uint8]

GRAY_FORMATS = frozenset({"gray8", "gray", "mono8"})
COLOUR_FORMATS = frozenset({"bgr24", "rgb24"})
ENCODED_FORMATS = frozenset({"jpeg", "jpg", "png"})
SUPPORTED_FORMATS = GRAY_FORMATS | COLOUR_FORMATS | ENCODED_FORMATS


def _format(fmt: str | None) -> str:
    name = (fmt or "gray8").lower()
    if name not in SUPPORTED_FORMATS:
        raise RejectFrame("unsupported_format", f"format {fmt!r} is none of {sorted(SUPPORTED_FORMATS)}")
    return name


def _raw(pixels: bytes, fmt: str, width: int | None, height: int | None, channels: int) -> Image:
    if not width or not height:
        raise RejectFrame("invalid_pixels", f"{fmt} needs width and height")
    expected = width * height * channels
    if len(pixels) != expected:
        raise RejectFrame("invalid_pixels", f"{len(pixels)} bytes for {width}x{height} {fmt} ({expected})")
    shape = (height, width) if channels == 1 else (height, width, channels)
    return np.frombuffer(pixels, dtype=np.uint8).reshape(shape)


def _decoded(pixels: bytes, fmt: str, flags: int) -> Image:
    image = cv2.imdecode(np.frombuffer(pixels, dtype=np.uint8), flags)
    if image is None:
        raise RejectFrame("invalid_pixels", f"{len(pixels)} bytes are not a readable {fmt}")
    return np.asarray(image, dtype=np.uint8)


def bgr_image(pixels: bytes, fmt: str | None, width: int | None, height: int | None) -> Image:
    """Height x width x 3, blue-green-red, as OpenCV's models expect."""
    name = _format(fmt)
    if name in ENCODED_FORMATS:
        return _decoded(pixels, name, cv2.IMREAD_COLOR)
    if name in GRAY_FORMATS:
        return np.asarray(cv2.cvtColor(_raw(pixels, name, width, height, 1), cv2.COLOR_GRAY2BGR), dtype=np.uint8)
    image = _raw(pixels, name, width, height, 3)
    return np.ascontiguousarray(image[:, :, ::-1]) if name == "rgb24" else image


def gray_image(pixels: bytes, fmt: str | None, width: int | None, height: int | None) -> Image:
    """Height x width intensities; gray8 pixels are read in place, without a copy."""
    name = _format(fmt)
    if name in GRAY_FORMATS:
        return _raw(pixels, name, width, height, 1)
    if name in ENCODED_FORMATS:
        return _decoded(pixels, name, cv2.IMREAD_GRAYSCALE)
    code = cv2.COLOR_RGB2GRAY if name == "rgb24" else cv2.COLOR_BGR2GRAY
    return np.asarray(cv2.cvtColor(_raw(pixels, name, width, height, 3), code), dtype=np.uint8)


def to_bgr(frame: Frame) -> Image:
    routed = frame.routed
    return bgr_image(frame.pixels, routed.format, routed.width, routed.height)


def to_gray(frame: Frame) -> Image:
    routed = frame.routed
    return gray_image(frame.pixels, routed.format, routed.width, routed.height)
