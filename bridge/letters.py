"""Dead-letter records for capture entries that cannot be mirrored, kept small enough to send."""

from __future__ import annotations

from typing import Any

from app.models import DeadLetter
from app.parsing import ParseError

MAX_RAW_FIELDS = 64
MAX_RAW_VALUE_CHARS = 16_384
MAX_ID_CHARS = 256
MAX_DETAIL_CHARS = 2_048

DELETED_REASON = "entry_deleted"
TOO_LARGE_REASON = "too_large"


def _clean(text: str, limit: int) -> str:
    # Lone surrogates cannot be encoded into the JSON record; show them escaped instead.
    cut = text[:limit]
    try:
        cut.encode("utf-8")
    except UnicodeEncodeError:
        cut = cut.encode("utf-8", "backslashreplace").decode("utf-8")
    return cut


def _clean_id(value: Any) -> str | None:
    if value is None:
        return None
    return _clean(str(value), MAX_ID_CHARS)


def bounded_raw(raw: dict[str, str]) -> tuple[dict[str, Any], bool]:
    """The entry's fields as evidence, cut to a size the dead-letter topic accepts."""
    out: dict[str, Any] = {}
    truncated = len(raw) > MAX_RAW_FIELDS
    for index, (key, value) in enumerate(raw.items()):
        if index >= MAX_RAW_FIELDS:
            break
        text = str(value)
        if len(text) > MAX_RAW_VALUE_CHARS or len(key) > MAX_ID_CHARS:
            truncated = True
        out[_clean(key, MAX_ID_CHARS)] = _clean(text, MAX_RAW_VALUE_CHARS)
    return out, truncated


def letter(
    reason: str,
    detail: str,
    stream_id: str,
    raw: dict[str, str],
    frame_id: Any = None,
    camera_id: Any = None,
) -> DeadLetter:
    evidence, truncated = bounded_raw(raw)
    if truncated:
        detail = f"{detail} (raw truncated)"
    return DeadLetter(
        reason=reason,
        detail=_clean(detail, MAX_DETAIL_CHARS),
        frame_id=_clean_id(frame_id),
        camera_id=_clean_id(camera_id),
        stream_id=stream_id,
        raw=evidence,
    )


def for_parse_error(error: ParseError, stream_id: str, raw: dict[str, str]) -> DeadLetter:
    return letter(error.reason, error.detail, stream_id, raw, error.frame_id, error.camera_id)


def for_deleted(stream_id: str) -> DeadLetter:
    return letter(
        DELETED_REASON,
        "the stream entry was trimmed or deleted before the bridge mirrored it; its content is gone",
        stream_id,
        {},
    )
