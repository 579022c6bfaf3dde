"""Turns a capture-stream entry into a FrameEvent, or into a precise reason why not.

Capture services in the field write three forms, each key a Redis stream field:

* flat: frame_id, camera_id, timestamp, width, ... every value a string;
* v2: the same ids plus ``metadata`` and ``trace_context`` as JSON objects, storage_path;
* wrapped: a single ``payload`` or ``event`` field holding the whole event as JSON;
* detektr's rtsp-capture: a pydantic dump, each value ``str()``-ed or JSON-encoded, with
  ``resolution`` as ``[w, h]``, ``frame_buffer_key`` as the claim-check key, an epoch
  ``capture_timestamp`` beside a naive ISO ``timestamp``, and the literal ``None`` for absent.

In every form the literal ``None`` means absent, and an unknown field whose text is a JSON
object or array is kept in metadata as that JSON. A naive timestamp is read in the zone the
caller names (UTC by default), unless an epoch ``capture_timestamp`` says exactly when.
Credentials in URLs are redacted from every value (see ``frame_buffer_sdk.redact``) as the entry is decoded,
so neither the frame nor the evidence kept for a dead letter carries a password.

``parse_entry`` never raises: whatever the bytes, it returns a ``ParseOutcome``. A bad
entry's ``ParseError.reason`` is one of ``empty_entry``, ``invalid_encoding``, ``invalid_json``,
``missing_field``, ``invalid_field`` or ``invalid_entry``; its ``detail`` names the field and why.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

from pydantic import ValidationError

from frame_buffer_sdk.models import FrameEvent
from frame_buffer_sdk.redact import redact_text, redact_value

# Fields the flat and v2 forms define; everything else is kept as metadata.
_KNOWN = frozenset(
    {
        "frame_id",
        "camera_id",
        "timestamp",
        "captured_at",
        "width",
        "height",
        "format",
        "size_bytes",
        "priority",
        "detection_type",
        "capabilities",
        "traceparent",
        "tracestate",
        "frame_key",
        "sequence",
        "metadata",
        "trace_context",
        "storage_path",
        "resolution",
        "frame_buffer_key",
        "capture_timestamp",
    }
)
# What str(None) writes: Python publishers turn an absent value into this text.
_ABSENT = "None"
_WRAPPERS = ("payload", "event")
_MAX_EPOCH = 253402300799  # 9999-12-31T23:59:59Z: anything later is not a capture time
_MIN_YEAR = 1970
_INT_FIELDS = ("sequence", "width", "height", "size_bytes", "priority")


@dataclass(frozen=True, slots=True)
class ParseError:
    reason: str
    detail: str
    frame_id: str | None = None
    camera_id: str | None = None


@dataclass(frozen=True, slots=True)
class ParseOutcome:
    frame: FrameEvent | None
    error: ParseError | None
    raw: dict[str, str] = field(default_factory=dict)


class _Invalid(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _decode(fields: Mapping[Any, Any]) -> tuple[dict[str, str], _Invalid | None]:
    """The entry as text, URLs redacted; the first field that is not UTF-8 is remembered."""
    try:
        # The common entry, all UTF-8 bytes, in one comprehension; anything else takes the slow path.
        out = {k.decode(): v.decode() for k, v in fields.items()}
    except (UnicodeDecodeError, AttributeError):
        return _decode_slow(fields)
    if any("/" in k for k in out):
        return _decode_slow(fields)
    for k, v in out.items():
        if "/" in v:  # the membership test spares the call for the many values that hold no URL
            out[k] = redact_text(v)
    return out, None


def _decode_slow(fields: Mapping[Any, Any]) -> tuple[dict[str, str], _Invalid | None]:
    out: dict[str, str] = {}
    problem: _Invalid | None = None
    for key, value in fields.items():
        k, bad_key = _utf8(key)
        v, bad_value = _utf8(value)
        if bad_key:
            problem = problem or _Invalid("invalid_encoding", f"{k}: field name is not UTF-8 ({bad_key})")
        if bad_value:
            problem = problem or _Invalid("invalid_encoding", f"{k}: value is not UTF-8 ({bad_value})")
        # The membership tests spare the call for the many values that hold no URL at all.
        out[redact_text(k) if "/" in k else k] = redact_text(v) if "/" in v else v
    return out, problem


def _utf8(raw: Any) -> tuple[str, str | None]:
    """``raw`` as text, and why it is not UTF-8 (None when it is; undecodable bytes kept visible)."""
    if not isinstance(raw, bytes):
        return str(raw), None
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return raw.decode("utf-8", "backslashreplace"), exc.reason


def parse_timestamp(value: Any, name: str = "timestamp", naive_tz: tzinfo = UTC) -> datetime:
    """ISO-8601 with or without offset (naive is read in ``naive_tz``), or epoch seconds."""
    parsed, naive = _parse_time(value, name)
    return _localize(parsed, naive_tz, value, name) if naive else parsed


def _parse_time(value: Any, name: str) -> tuple[datetime, bool]:
    """The time and whether it was naive (a naive result is still without tzinfo)."""
    if isinstance(value, bool):
        raise _Invalid("invalid_field", f"{name}: expected ISO-8601 or epoch seconds, got a boolean")
    if isinstance(value, int | float):
        return _from_epoch(value, name), False
    if not isinstance(value, str) or not value.strip():
        raise _Invalid("invalid_field", f"{name}: expected ISO-8601 or epoch seconds, got {value!r:.80}")
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return _from_epoch(seconds, name), False
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise _Invalid("invalid_field", f"{name}: {text!r:.80} is neither ISO-8601 nor epoch seconds") from None
    if parsed.tzinfo is None:
        return parsed, True
    return _checked(parsed, text, name), False


def _localize(naive: datetime, zone: tzinfo, value: Any, name: str) -> datetime:
    return _checked(naive.replace(tzinfo=zone), str(value).strip(), name)


def _checked(parsed: datetime, text: str, name: str) -> datetime:
    try:
        utc = parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        utc = None
    # Downstream services subtract capture times; a time they cannot represent is no capture time.
    if utc is None or utc.year < _MIN_YEAR:
        raise _Invalid("invalid_field", f"{name}: {text!r:.80} is before 1970 or out of range")
    return parsed


def _captured_at(doc: dict[str, Any], naive_tz: tzinfo) -> datetime:
    """An offset or epoch ``timestamp`` is exact; a naive one yields to an epoch ``capture_timestamp``."""
    name = "timestamp" if "timestamp" in doc else "captured_at"
    ts = doc.get(name)
    epoch = doc.get("capture_timestamp")
    exact = None if epoch is None else _parse_time(epoch, "capture_timestamp")
    if exact is not None and exact[1]:
        raise _Invalid("invalid_field", "capture_timestamp: expected epoch seconds or ISO-8601 with an offset")
    if ts is None:
        if exact is None:
            raise _Invalid("missing_field", "timestamp: required (ISO-8601 or epoch seconds)")
        return exact[0]
    parsed, naive = _parse_time(ts, name)
    if not naive:
        return parsed
    return exact[0] if exact is not None else _localize(parsed, naive_tz, ts, name)


def _from_epoch(seconds: float, name: str) -> datetime:
    try:
        value = float(seconds)
    except OverflowError:
        value = math.inf
    if not math.isfinite(value) or not 0 <= value <= _MAX_EPOCH:
        hint = " (milliseconds? epoch values are seconds)" if math.isfinite(value) and value > _MAX_EPOCH else ""
        raise _Invalid("invalid_field", f"{name}: epoch seconds {seconds!r:.40} out of range{hint}")
    return datetime.fromtimestamp(value, tz=UTC)


def _json_object(text: Any, name: str) -> dict[str, Any]:
    if isinstance(text, dict):
        return text
    if not isinstance(text, str):
        raise _Invalid("invalid_field", f"{name}: expected a JSON object")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise _Invalid("invalid_json", f"{name}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise _Invalid("invalid_json", f"{name}: expected a JSON object, got {type(value).__name__}")
    # A \ud800-style escape decodes to a lone surrogate that no UTF-8 record can carry on.
    if ("\\ud" in text or "\\uD" in text) and _has_surrogate(value):
        raise _Invalid("invalid_encoding", f"{name}: contains an unpaired UTF-16 surrogate escape")
    return value


def _has_surrogate(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    except (ValueError, RecursionError):
        return False
    return False


def _capabilities(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [c.strip() for c in value.split(",") if c.strip()]
    if isinstance(value, list) and all(isinstance(c, str) for c in value):
        return [c.strip() for c in value if c.strip()]
    raise _Invalid("invalid_field", f"{name}: expected a comma-separated string or a list of strings")


def _resolution(value: Any) -> tuple[int, int]:
    """``[w, h]`` as JSON text or a list; v1's ``"640, 360"`` without brackets too."""
    items: Any = value
    if isinstance(value, str):
        text = value.strip()
        try:
            items = json.loads(text if text.startswith("[") else f"[{text}]")
        except (ValueError, RecursionError):
            items = None
    if (
        isinstance(items, list)
        and len(items) == 2
        and all(isinstance(n, int) and not isinstance(n, bool) for n in items)
    ):
        return items[0], items[1]
    raise _Invalid("invalid_field", f"resolution: expected [width, height] as integers, got {value!r:.80}")


def _json_extra(value: Any) -> Any:
    """A flat field holding a JSON object or array, as that JSON; any other text as it is."""
    if not isinstance(value, str) or not value.lstrip().startswith(("{", "[")):
        return value
    try:
        decoded = json.loads(value)
    except (ValueError, RecursionError):
        return value
    if not isinstance(decoded, dict | list) or _has_surrogate(decoded):
        return value
    return decoded


def _build(doc: dict[str, Any], stream_id: str | None, naive_tz: tzinfo, flat: bool) -> FrameEvent:
    if _ABSENT in doc.values():
        doc = {k: v for k, v in doc.items() if v != _ABSENT}
    for required in ("frame_id", "camera_id"):
        value = doc.get(required)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise _Invalid("missing_field", f"{required}: required")
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise _Invalid("invalid_field", f"{required}: expected a string, got {type(value).__name__}")
    for name in _INT_FIELDS:
        if isinstance(doc.get(name), bool):
            raise _Invalid("invalid_field", f"{name}: expected an integer, got a boolean")
    captured_at = _captured_at(doc, naive_tz)
    width, height = _blank_to_none(doc.get("width")), _blank_to_none(doc.get("height"))
    if doc.get("resolution") not in (None, ""):
        res_width, res_height = _resolution(doc["resolution"])
        width = res_width if width is None else width
        height = res_height if height is None else height

    metadata_raw = doc.get("metadata")
    metadata = _json_object(metadata_raw, "metadata") if metadata_raw not in (None, "") else {}
    trace_raw = doc.get("trace_context")
    trace = _json_object(trace_raw, "trace_context") if trace_raw not in (None, "") else {}

    caps = _capabilities(doc.get("capabilities"), "capabilities")
    caps += _capabilities(doc.get("detection_type"), "detection_type")
    if not caps and "detection_type" in metadata:
        caps = _capabilities(metadata["detection_type"], "metadata.detection_type")

    extras = {k: (_json_extra(v) if flat else v) for k, v in doc.items() if k not in _KNOWN}
    if doc.get("storage_path") not in (None, ""):
        extras["storage_path"] = doc["storage_path"]
    # The JSON decoded here may spell a URL with escapes the redaction of the raw text could not see.
    merged_meta = redact_value({**extras, **metadata})

    candidate = {
        "frame_id": str(doc["frame_id"]).strip(),
        "camera_id": str(doc["camera_id"]).strip(),
        "captured_at": captured_at,
        "sequence": _blank_to_none(doc.get("sequence")),
        "width": width,
        "height": height,
        "format": _blank_to_none(doc.get("format")),
        "size_bytes": _blank_to_none(doc.get("size_bytes")),
        "priority": _blank_to_none(doc.get("priority")) or 0,
        "capabilities": caps,
        "frame_key": _blank_to_none(doc.get("frame_key") or doc.get("frame_buffer_key") or doc.get("storage_path")),
        "traceparent": _blank_to_none(doc.get("traceparent") or trace.get("traceparent")),
        "tracestate": _blank_to_none(doc.get("tracestate") or trace.get("tracestate")),
        "metadata": merged_meta,
        "stream_id": stream_id,
    }
    try:
        return FrameEvent.model_validate(candidate)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "entry"
        raise _Invalid("invalid_field", f"{loc}: {err['msg']} (got {err.get('input')!r:.80})") from None


def _blank_to_none(value: Any) -> Any:
    return None if value is None or (isinstance(value, str) and not value.strip()) else value


def parse_entry(fields: Mapping[Any, Any], stream_id: str | None = None, *, naive_tz: tzinfo = UTC) -> ParseOutcome:
    """Parse one stream entry; a naive timestamp is read in ``naive_tz``. Never raises."""
    try:
        raw, encoding_problem = _decode(fields)
    except Exception as exc:  # a Mapping whose items() misbehaves: still a reason, not a crash
        return ParseOutcome(None, ParseError("invalid_entry", f"unreadable entry: {exc!r:.200}"))
    hint_fid = raw.get("frame_id")
    hint_cam = raw.get("camera_id")
    try:
        if not raw:
            raise _Invalid("empty_entry", "entry has no fields")
        if encoding_problem is not None:
            raise encoding_problem
        wrapper = next((w for w in _WRAPPERS if w in raw), None)
        if wrapper is not None:
            doc = redact_value(_json_object(raw[wrapper], wrapper))
            hint_fid = doc.get("frame_id") if isinstance(doc.get("frame_id"), str) else hint_fid
            hint_cam = doc.get("camera_id") if isinstance(doc.get("camera_id"), str) else hint_cam
            frame = _build(doc, stream_id, naive_tz, flat=False)
        else:
            frame = _build(dict(raw), stream_id, naive_tz, flat=True)
        return ParseOutcome(frame, None, raw)
    except _Invalid as exc:
        return ParseOutcome(None, ParseError(exc.reason, exc.detail, hint_fid, hint_cam), raw)
    except Exception as exc:  # defence in depth: the bridge must never stall on one entry
        return ParseOutcome(
            None, ParseError("invalid_entry", f"unexpected {type(exc).__name__}: {exc!s:.200}", hint_fid, hint_cam), raw
        )
