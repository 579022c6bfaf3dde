"""Dead-letter records for capture entries that cannot be mirrored, kept small enough to send."""

from __future__ import annotations

import json
from typing import Any

from core.parsing import ParseError
from frame_buffer_sdk.models import DeadLetter

MAX_RAW_FIELDS = 64
MAX_RAW_VALUE_CHARS = 16_384
# The evidence's size once JSON-encoded, far below the producer's 1 MiB: a control byte takes six
# bytes as an escape, so a limit in characters alone let a dead letter grow past what Kafka takes,
# and a dead letter that cannot be sent leaves its entry pending (and first in line) forever.
MAX_RAW_BYTES = 64 * 1024
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


def encoded_size(text: str) -> int:
    """Bytes ``text`` takes as a JSON string in a record (pydantic writes UTF-8, escapes controls)."""
    return len(json.dumps(text, ensure_ascii=False).encode("utf-8", "backslashreplace"))


def _fit(text: str, budget: int) -> str:
    """The longest prefix of ``text`` (already clean) whose encoded size is within ``budget``."""
    if encoded_size(text) <= budget:
        return text
    low, high = 0, len(text)
    while low < high:
        mid = (low + high + 1) // 2
        if encoded_size(text[:mid]) <= budget:
            low = mid
        else:
            high = mid - 1
    return text[:low]


def bounded_raw(raw: dict[Any, Any], max_bytes: int = MAX_RAW_BYTES) -> tuple[dict[str, Any], bool]:
    """The entry's fields as evidence, cut to ``max_bytes`` of JSON so the dead letter is sendable."""
    out: dict[str, Any] = {}
    truncated = len(raw) > MAX_RAW_FIELDS
    budget = max_bytes
    for index, (key, value) in enumerate(raw.items()):
        if index >= MAX_RAW_FIELDS:
            break
        text, name = str(value), str(key)
        if len(text) > MAX_RAW_VALUE_CHARS or len(name) > MAX_ID_CHARS:
            truncated = True
        name = _clean(name, MAX_ID_CHARS)
        # Separators and quotes: ``"key": "value", `` costs a few bytes beyond the two strings.
        budget -= encoded_size(name) + 4
        if budget <= 2:
            truncated = True
            break
        cleaned = _clean(text, MAX_RAW_VALUE_CHARS)
        cut = _fit(cleaned, budget)
        if len(cut) < len(cleaned):
            truncated = True
        out[name] = cut
        budget -= encoded_size(cut)
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
