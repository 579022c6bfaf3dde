"""What a processor's ``process`` function receives, and how it refuses a frame."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from frame_buffer_sdk.errors import FrameBufferError
from frame_buffer_sdk.models import RoutedFrame


@dataclass(frozen=True, slots=True)
class Frame:
    """One routed frame with its pixel bytes, already loaded from Redis (claim-check).

    ``pixels`` is never empty-because-missing: a frame whose pixels expired or were never
    stored is dead-lettered as ``pixels_missing`` before ``process`` would see it.
    """

    routed: RoutedFrame
    pixels: bytes
    partition: int
    offset: int

    @property
    def frame_id(self) -> str:
        return self.routed.frame_id

    @property
    def camera_id(self) -> str:
        return self.routed.camera_id

    @property
    def capability(self) -> str:
        return self.routed.capability


ProcessFn = Callable[[Frame], Awaitable[dict[str, Any]]]
"""A processor's work: a frame in, a JSON-serialisable result object out."""


class RejectFrame(FrameBufferError):
    """Raised by ``process`` for a frame it cannot handle: dead-lettered with this reason.

    Any other exception is dead-lettered as ``processing_failed``; either way the frame's
    offset is committed, so one bad frame never blocks its partition.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
