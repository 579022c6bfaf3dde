"""The capture-stream parser: every form capture services write, every kind of bad entry, and fuzzing."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.parsing import ParseOutcome, parse_entry, parse_timestamp
from frame_buffer_sdk.models import FrameEvent

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def b(fields: Mapping[str, Any]) -> dict[bytes, bytes]:
    """As redis-py hands an entry over: bytes keys and values."""
    return {k.encode(): (v if isinstance(v, bytes) else str(v).encode()) for k, v in fields.items()}


def ok(outcome: ParseOutcome) -> FrameEvent:
    assert outcome.error is None, outcome.error
    assert outcome.frame is not None
    return outcome.frame


def bad(outcome: ParseOutcome, reason: str, *detail_parts: str) -> None:
    assert outcome.frame is None
    assert outcome.error is not None
    assert outcome.error.reason == reason, outcome.error
    for part in detail_parts:
        assert part in outcome.error.detail, outcome.error.detail


# --- flat form -----------------------------------------------------------------------------------


def test_flat_form_maps_every_field() -> None:
    fields = {
        "frame_id": "f-1",
        "camera_id": "cam-7",
        "timestamp": "2026-03-01T12:00:00Z",
        "width": "640",
        "height": "480",
        "format": "jpeg",
        "size_bytes": "12345",
        "priority": "9",
        "capabilities": "motion, object_detection,,motion",
        "traceparent": TRACEPARENT,
        "tracestate": "vendor=1",
        "frame_key": "frames:px:f-1",
        "sequence": "42",
        "location": "dock-3",
        "exposure": "1/250",
    }
    frame = ok(parse_entry(b(fields), "1-0"))
    assert frame.frame_id == "f-1"
    assert frame.camera_id == "cam-7"
    assert frame.captured_at == T0
    assert (frame.width, frame.height, frame.format, frame.size_bytes) == (640, 480, "jpeg", 12345)
    assert frame.priority == 9
    assert frame.capabilities == ["motion", "object_detection"]
    assert frame.traceparent == TRACEPARENT
    assert frame.tracestate == "vendor=1"
    assert frame.frame_key == "frames:px:f-1"
    assert frame.sequence == 42
    assert frame.metadata == {"location": "dock-3", "exposure": "1/250"}
    assert frame.stream_id == "1-0"


def test_flat_form_minimal_defaults() -> None:
    frame = ok(parse_entry(b({"frame_id": "f", "camera_id": "c", "timestamp": "1772366400"})))
    assert frame.captured_at == T0
    assert frame.priority == 0
    assert frame.capabilities == []
    assert frame.metadata == {}
    assert frame.width is None and frame.sequence is None and frame.traceparent is None
    assert frame.stream_id is None


def test_blank_optional_fields_are_absent() -> None:
    fields = {"frame_id": " f ", "camera_id": "c", "timestamp": "1772366400", "width": "", "priority": " "}
    frame = ok(parse_entry(b(fields)))
    assert frame.frame_id == "f"
    assert frame.width is None
    assert frame.priority == 0


def test_detection_type_is_a_capability_alias() -> None:
    fields = {"frame_id": "f", "camera_id": "c", "timestamp": "1772366400", "detection_type": "faces,plates"}
    assert ok(parse_entry(b(fields))).capabilities == ["faces", "plates"]
    fields["capabilities"] = "motion,faces"
    assert ok(parse_entry(b(fields))).capabilities == ["motion", "faces", "plates"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-03-01T12:00:00Z", T0),
        ("2026-03-01T12:00:00+00:00", T0),
        ("2026-03-01T14:00:00+02:00", T0),
        ("2026-03-01T12:00:00", T0),  # naive means UTC
        ("2026-03-01 12:00:00.500000", T0 + timedelta(milliseconds=500)),
        ("1772366400", T0),
        ("1772366400.25", T0 + timedelta(milliseconds=250)),
        (" 1772366400 ", T0),
    ],
)
def test_timestamps(value: str, expected: datetime) -> None:
    frame = ok(parse_entry(b({"frame_id": "f", "camera_id": "c", "timestamp": value})))
    assert frame.captured_at == expected
    assert frame.captured_at.tzinfo is not None


def test_offset_is_kept() -> None:
    parsed = parse_timestamp("2026-03-01T14:00:00+02:00")
    assert parsed.utcoffset() == timedelta(hours=2)
    assert parsed.tzinfo == timezone(timedelta(hours=2))


def test_captured_at_is_accepted_for_timestamp() -> None:
    frame = ok(parse_entry(b({"frame_id": "f", "camera_id": "c", "captured_at": "2026-03-01T12:00:00Z"})))
    assert frame.captured_at == T0


# --- v2 form -------------------------------------------------------------------------------------


def test_v2_form_metadata_and_trace_context() -> None:
    fields = {
        "frame_id": "f-2",
        "camera_id": "cam-1",
        "timestamp": "2026-03-01T12:00:00Z",
        "metadata": json.dumps({"detection_type": "faces", "zone": {"x": 1}, "tags": ["a"]}),
        "trace_context": json.dumps({"traceparent": TRACEPARENT, "tracestate": "a=b"}),
        "storage_path": "s3://bucket/f-2.jpg",
    }
    frame = ok(parse_entry(b(fields), "5-1"))
    assert frame.capabilities == ["faces"]
    assert frame.traceparent == TRACEPARENT
    assert frame.tracestate == "a=b"
    assert frame.frame_key == "s3://bucket/f-2.jpg"
    assert frame.metadata == {
        "detection_type": "faces",
        "zone": {"x": 1},
        "tags": ["a"],
        "storage_path": "s3://bucket/f-2.jpg",
    }


def test_v2_detection_type_list_inside_metadata() -> None:
    fields = {
        "frame_id": "f",
        "camera_id": "c",
        "timestamp": "1772366400",
        "metadata": json.dumps({"detection_type": ["a", "b"]}),
    }
    assert ok(parse_entry(b(fields))).capabilities == ["a", "b"]


def test_flat_capabilities_win_over_metadata_detection_type() -> None:
    fields = {
        "frame_id": "f",
        "camera_id": "c",
        "timestamp": "1772366400",
        "capabilities": "x",
        "metadata": json.dumps({"detection_type": "y"}),
    }
    assert ok(parse_entry(b(fields))).capabilities == ["x"]


# --- wrapped form --------------------------------------------------------------------------------


@pytest.mark.parametrize("wrapper", ["payload", "event"])
def test_wrapped_json_event(wrapper: str) -> None:
    doc = {
        "frame_id": "f-3",
        "camera_id": "cam-2",
        "timestamp": 1772366400.5,
        "width": 320,
        "height": 240,
        "priority": 3,
        "capabilities": ["motion", "faces"],
        "metadata": {"lens": "wide"},
        "trace_context": {"traceparent": TRACEPARENT},
        "site": "north",
    }
    frame = ok(parse_entry({wrapper.encode(): json.dumps(doc).encode()}, "9-0"))
    assert frame.frame_id == "f-3"
    assert frame.captured_at == T0 + timedelta(milliseconds=500)
    assert (frame.width, frame.height, frame.priority) == (320, 240, 3)
    assert frame.capabilities == ["motion", "faces"]
    assert frame.traceparent == TRACEPARENT
    assert frame.metadata == {"lens": "wide", "site": "north"}
    assert frame.stream_id == "9-0"


def test_wrapped_integer_ids_become_strings() -> None:
    frame = ok(parse_entry(b({"payload": json.dumps({"frame_id": 17, "camera_id": 4, "timestamp": 1772366400})})))
    assert (frame.frame_id, frame.camera_id) == ("17", "4")


def test_str_keys_and_values_work_too() -> None:
    frame = ok(parse_entry({"frame_id": "f", "camera_id": "c", "timestamp": "1772366400"}))
    assert frame.frame_id == "f"


def test_frame_survives_the_wire() -> None:
    fields = {
        "frame_id": "f",
        "camera_id": "c",
        "timestamp": "2026-03-01T14:00:00+02:00",
        "metadata": json.dumps({"nested": {"deep": [1, 2.5, None, True]}}),
    }
    frame = ok(parse_entry(b(fields), "1-1"))
    assert FrameEvent.model_validate_json(frame.model_dump_json()) == frame


# --- bad entries ---------------------------------------------------------------------------------

BASE = {"frame_id": "f-bad", "camera_id": "cam-bad", "timestamp": "1772366400"}


def with_(**changes: Any) -> dict[str, Any]:
    out = {**BASE, **changes}
    return {k: v for k, v in out.items() if v is not None}


def wrapped(doc: Any) -> dict[str, str]:
    return {"payload": json.dumps(doc)}


@pytest.mark.parametrize(
    ("fields", "reason", "detail"),
    [
        ({}, "empty_entry", "no fields"),
        (with_(frame_id=None), "missing_field", "frame_id"),
        (with_(camera_id=None), "missing_field", "camera_id"),
        (with_(camera_id="   "), "missing_field", "camera_id"),
        (with_(timestamp=None), "missing_field", "timestamp"),
        (with_(timestamp="yesterday"), "invalid_field", "timestamp"),
        (with_(timestamp="1772366400000"), "invalid_field", "milliseconds"),
        (with_(timestamp="nan"), "invalid_field", "out of range"),
        (with_(timestamp="inf"), "invalid_field", "out of range"),
        (with_(timestamp="-5"), "invalid_field", "out of range"),
        (with_(timestamp="1900-01-01T00:00:00Z"), "invalid_field", "before 1970"),
        (with_(timestamp="0001-01-01T00:00:00+01:00"), "invalid_field", "out of range"),
        (with_(timestamp="2026-13-01T00:00:00"), "invalid_field", "neither ISO-8601"),
        (with_(width="-1"), "invalid_field", "width"),
        (with_(width="wide"), "invalid_field", "width"),
        (with_(height="1.5"), "invalid_field", "height"),
        (with_(priority="11"), "invalid_field", "priority"),
        (with_(sequence="-3"), "invalid_field", "sequence"),
        (with_(size_bytes="lots"), "invalid_field", "size_bytes"),
        (with_(capabilities="motion detection"), "invalid_field", "capabilities"),
        (with_(detection_type="bad!"), "invalid_field", "capabilities"),
        (with_(frame_id="x" * 300), "invalid_field", "frame_id"),
        (with_(format="f" * 100), "invalid_field", "format"),
        (with_(metadata="not json"), "invalid_json", "metadata"),
        (with_(metadata="[1, 2]"), "invalid_json", "metadata: expected a JSON object, got list"),
        (with_(metadata="[" * 100_000), "invalid_json", "metadata"),
        (with_(trace_context="{"), "invalid_json", "trace_context"),
        (with_(trace_context='{"traceparent": 5}'), "invalid_field", "traceparent"),
        ({"payload": "{"}, "invalid_json", "payload: not valid JSON"),
        ({"event": "[]"}, "invalid_json", "event: expected a JSON object, got list"),
        ({"payload": "null"}, "invalid_json", "got NoneType"),
        (wrapped({**BASE, "frame_id": True}), "invalid_field", "frame_id: expected a string, got bool"),
        (wrapped({**BASE, "camera_id": {"id": 1}}), "invalid_field", "camera_id: expected a string, got dict"),
        (wrapped({**BASE, "width": True}), "invalid_field", "width: expected an integer, got a boolean"),
        (wrapped({**BASE, "timestamp": True}), "invalid_field", "boolean"),
        (wrapped({**BASE, "timestamp": 10**400}), "invalid_field", "out of range"),
        (wrapped({**BASE, "timestamp": [1]}), "invalid_field", "timestamp"),
        (wrapped({**BASE, "capabilities": [1, 2]}), "invalid_field", "capabilities"),
        (wrapped({**BASE, "metadata": 5}), "invalid_field", "metadata: expected a JSON object"),
        ({"payload": '{"frame_id": "f", "camera_id": "c", "timestamp": 1, "note": "\\ud800"}'}, "invalid_encoding", ""),
    ],
)
def test_bad_entries_have_precise_reasons(fields: dict[str, Any], reason: str, detail: str) -> None:
    bad(parse_entry(b(fields), "3-0"), reason, detail)


def test_invalid_utf8_names_the_field() -> None:
    outcome = parse_entry({b"frame_id": b"f", b"camera_id": b"\xff\xfe", b"timestamp": b"1772366400"})
    bad(outcome, "invalid_encoding", "camera_id: value is not UTF-8")
    assert outcome.raw["camera_id"] == "\\xff\\xfe"  # kept visible for the dead letter


def test_invalid_utf8_field_name() -> None:
    bad(parse_entry({**b(BASE), b"\xc3": b"x"}), "invalid_encoding", "field name is not UTF-8")


def test_bad_entry_keeps_ids_for_the_dead_letter() -> None:
    outcome = parse_entry(b(with_(width="-1")), "3-0")
    assert outcome.error is not None
    assert (outcome.error.frame_id, outcome.error.camera_id) == ("f-bad", "cam-bad")
    assert outcome.raw == {**BASE, "width": "-1"}


def test_bad_wrapped_entry_keeps_ids_from_the_payload() -> None:
    outcome = parse_entry(b(wrapped({**BASE, "timestamp": "soon"})))
    assert outcome.error is not None
    assert (outcome.error.frame_id, outcome.error.camera_id) == ("f-bad", "cam-bad")


class _Exploding(Mapping[bytes, bytes]):
    def __getitem__(self, key: bytes) -> bytes:
        raise KeyError(key)

    def __iter__(self) -> Iterator[bytes]:
        raise RuntimeError("broken mapping")

    def __len__(self) -> int:
        return 1


def test_unreadable_mapping_is_a_reason_not_a_crash() -> None:
    bad(parse_entry(_Exploding()), "invalid_entry", "broken mapping")


# --- fuzzing -------------------------------------------------------------------------------------


def check_never_raises(fields: Any) -> None:
    outcome = parse_entry(fields, "1-0")
    assert (outcome.frame is None) != (outcome.error is None)
    if outcome.frame is not None:
        # A frame the parser accepts must be one the bridge can send and the router can read.
        assert FrameEvent.model_validate_json(outcome.frame.model_dump_json()).frame_id == outcome.frame.frame_id
    else:
        assert outcome.error is not None and outcome.error.reason and outcome.error.detail
        json.dumps(outcome.raw)


KNOWN = [
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
    "payload",
    "event",
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.dictionaries(st.binary(max_size=20), st.binary(max_size=60), max_size=8))
def test_fuzz_arbitrary_bytes(fields: dict[bytes, bytes]) -> None:
    check_never_raises(fields)


@FUZZ
@given(st.dictionaries(st.sampled_from(KNOWN).map(str.encode), st.binary(max_size=40), max_size=10))
def test_fuzz_known_fields_arbitrary_bytes(fields: dict[bytes, bytes]) -> None:
    check_never_raises(fields)


@FUZZ
@given(st.dictionaries(st.sampled_from(KNOWN), json_values, max_size=12), st.sampled_from(["payload", "event"]))
def test_fuzz_arbitrary_json_payloads(doc: dict[str, Any], wrapper: str) -> None:
    check_never_raises({wrapper.encode(): json.dumps(doc).encode()})


@FUZZ
@given(json_values)
def test_fuzz_any_json_document(doc: Any) -> None:
    check_never_raises({b"payload": json.dumps(doc).encode()})


@FUZZ
@given(
    st.dictionaries(st.sampled_from(KNOWN[:21]), json_values.map(json.dumps), max_size=12),
    st.fixed_dictionaries(
        {
            "frame_id": st.text(min_size=1, max_size=30),
            "camera_id": st.text(min_size=1, max_size=30),
            "timestamp": st.floats(0, 4e9).map(str) | st.datetimes().map(datetime.isoformat),
        }
    ),
)
def test_fuzz_mostly_valid_flat_entries(noise: dict[str, str], ids: dict[str, str]) -> None:
    check_never_raises(
        {k.encode("utf-8", "surrogatepass"): v.encode("utf-8", "surrogatepass") for k, v in {**noise, **ids}.items()}
    )
