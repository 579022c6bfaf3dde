"""A frame's pixel bytes as an image, in every format the capture services write.

Raw formats (``bgr24``, ``rgb24``, ``gray8``) need the frame's width and height; encoded
ones (``jpeg``, ``png``) carry their own. A frame that cannot be read raises RejectFrame
(``unsupported_format`` or ``invalid_pixels``), so the SDK dead-letters it with the reason.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from processor.frame import Frame, RejectFrame

Image = npt.NDArray[np.uint8]

GRAY_FORMATS = frozenset({"gray8", "gray", "mono8"})
COLOUR_FORMATS = frozenset({"bgr24", "rgb24"})
ENCODED_FORMATS = frozenset({"jpeg", "jpg", "png"})
SUPPORTED_FORMATS = GRAY_FORMATS | COLOUR_FORMATS | ENCODED_FORMATS


def _format(frame: Frame) -> str:
    fmt = (frame.routed.format or "gray8").lower()
    if fmt not in SUPPORTED_FORMATS:
        raise RejectFrame(
            "unsupported_format", f"format {frame.routed.format!r} is none of {sorted(SUPPORTED_FORMATS)}"
        )
    return fmt


def _raw(frame: Frame, channels: int) -> Image:
    routed = frame.routed
    if not routed.width or not routed.height:
        raise RejectFrame("invalid_pixels", f"{routed.format or 'gray8'} needs width and height")
    expected = routed.width * routed.height * channels
    if len(frame.pixels) != expected:
        raise RejectFrame(
            "invalid_pixels",
            f"{len(frame.pixels)} bytes for {routed.width}x{routed.height} {routed.format or 'gray8'} ({expected})",
        )
    shape = (routed.height, routed.width) if channels == 1 else (routed.height, routed.width, channels)
    return np.frombuffer(frame.pixels, dtype=np.uint8).reshape(shape)


def _decoded(frame: Frame, flags: int) -> Image:
    image = cv2.imdecode(np.frombuffer(frame.pixels, dtype=np.uint8), flags)
    if image is None:
        raise RejectFrame("invalid_pixels", f"{len(frame.pixels)} bytes are not a readable {frame.routed.format}")
    return np.asarray(image, dtype=np.uint8)


def to_bgr(frame: Frame) -> Image:
    """Height x width x 3, blue-green-red, as OpenCV's models expect."""
    fmt = _format(frame)
    if fmt in ENCODED_FORMATS:
        return _decoded(frame, cv2.IMREAD_COLOR)
    if fmt in GRAY_FORMATS:
        return np.asarray(cv2.cvtColor(_raw(frame, 1), cv2.COLOR_GRAY2BGR), dtype=np.uint8)
    image = _raw(frame, 3)
    return np.ascontiguousarray(image[:, :, ::-1]) if fmt == "rgb24" else image


def to_gray(frame: Frame) -> Image:
    """Height x width intensities; a gray8 frame is read in place, without a copy."""
    fmt = _format(frame)
    if fmt in GRAY_FORMATS:
        return _raw(frame, 1)
    if fmt in ENCODED_FORMATS:
        return _decoded(frame, cv2.IMREAD_GRAYSCALE)
    code = cv2.COLOR_RGB2GRAY if fmt == "rgb24" else cv2.COLOR_BGR2GRAY
    return np.asarray(cv2.cvtColor(_raw(frame, 3), code), dtype=np.uint8)
