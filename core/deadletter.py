"""Writing to the dead-letter topic: every record that cannot go on leaves one, with its reason."""

from __future__ import annotations

import logging
from typing import Any

from core.context import Orchestrator
from core.metrics import DEAD_LETTERED, FRAME_REASONS, SHED_REASONS
from frame_buffer_sdk.models import DeadLetter, FrameEvent

log = logging.getLogger(__name__)


def frame_letter(
    reason: str,
    detail: str,
    frame: FrameEvent | None = None,
    *,
    capability: str | None = None,
    processor_id: str | None = None,
    raw: dict[str, Any] | None = None,
    key: bytes | None = None,
) -> tuple[bytes, bytes]:
    """The key and value of a frame's dead letter (or of what claimed to be a frame)."""
    record = DeadLetter(
        reason=reason,
        detail=detail,
        frame_id=frame.frame_id if frame else None,
        camera_id=frame.camera_id if frame else None,
        stream_id=frame.stream_id if frame else None,
        capability=capability,
        processor_id=processor_id,
        raw=raw if raw is not None else (frame.model_dump(mode="json") if frame else {}),
    )
    record_key = key if key is not None else (frame.frame_id.encode() if frame else b"")
    return record_key, record.model_dump_json().encode()


def count_letter(orch: Orchestrator, reason: str, shed: bool = False) -> None:
    """``shed`` frames are accounted as shed by the caller, not as dead-lettered, so that
    captured = processed + shed + dead-lettered holds exactly. Prometheus counts every frame
    letter once, shed or not, in frame_buffer_dead_lettered_total."""
    if shed:
        SHED_REASONS.add(reason)
    else:
        orch.counters.dead_lettered[reason] += 1
    FRAME_REASONS.add(reason)
    DEAD_LETTERED.labels(reason, "worker", "").inc()


async def dead_letter_event(orch: Orchestrator, reason: str, detail: str, key: str, raw: bytes) -> None:
    """A control/internal event that is not a frame: dead-lettered, but not a frame count."""
    record = DeadLetter(reason=reason, detail=detail, raw={"key": key, "value": raw.decode("utf-8", "replace")})
    await orch.topics.dead_letter.send(key=key.encode(), value=record.model_dump_json().encode())
    DEAD_LETTERED.labels(reason, "worker", "").inc()
    log.warning("dead-lettered event %s: %s", reason, detail)
