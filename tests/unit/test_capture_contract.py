"""detektr's rtsp-capture entries as first-class frames, and no camera password past the parser."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from bridge import letters
from core.parsing import ParseOutcome, parse_entry
from core.settings import Settings
from frame_buffer_sdk.models import FrameEvent
from tests.detektr import capture_entry

PASSWORD = "Zq9-s3cr@t/pw"
URL = f"rtsp://admin:{PASSWORD}@192.168.1.20:554/Streaming/Channels/101"
REDACTED = "rtsp://admin:***@192.168.1.20:554/Streaming/Channels/101"
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def ok(outcome: ParseOutcome) -> FrameEvent:
    assert outcome.error is None, outcome.error
    assert outcome.frame is not None
    return outcome.frame


def encoded(fields: dict[str, str]) -> dict[bytes, bytes]:
    return {k.encode(): v.encode() for k, v in fields.items()}


def everything_of(outcome: ParseOutcome) -> str:
    """All an outcome hands on: the frame's record, or the dead letter the bridge would send."""
    if outcome.frame is not None:
        return outcome.frame.model_dump_json()
    assert outcome.error is not None
    return letters.for_parse_error(outcome.error, "1-0", outcome.raw).model_dump_json()


def test_a_detektr_entry_is_a_first_class_frame() -> None:
    fid, fields = capture_entry(
        "front_door", 7, source_url=URL, captured=T0.timestamp(), tags={"site": "north"}, traceparent=TRACEPARENT
    )
    assert fields["trace_id"] == "None" and fields["resolution"] == "[1920, 1080]"  # as rtsp-capture writes them
    frame = ok(parse_entry(encoded(fields), "1-0"))
    assert frame.frame_id == fid and fid.split("_")[1:3] == ["rtsp-capture", "front-door"]
    assert frame.camera_id == "front_door"
    assert frame.frame_key == f"frame:{fid}"
    assert (frame.width, frame.height, frame.format, frame.size_bytes) == (1920, 1080, "bgr24", 1920 * 1080 * 3)
    assert frame.captured_at == T0
    assert frame.capabilities == ["object_detection"]
    assert frame.traceparent == TRACEPARENT
    meta = frame.metadata
    assert meta["source_url"] == REDACTED
    assert meta["tags"] == {"site": "north"}
    assert [stage["name"] for stage in meta["processing_stages"]] == ["capture"]
    assert meta["processing_stages"][0]["status"] == "completed"
    # Absent is absent, and what became a first-class field is not repeated in metadata.
    assert not {"trace_id", "span_id", "parent_span_id"} & set(meta)
    assert not {"frame_buffer_key", "resolution", "capture_timestamp", "timestamp"} & set(meta)
    assert PASSWORD not in frame.model_dump_json()


def test_real_trace_ids_are_kept_as_metadata() -> None:
    _, fields = capture_entry("c", 1, source_url=URL, captured=T0.timestamp(), trace_id="ab" * 16, span_id="cd" * 8)
    meta = ok(parse_entry(encoded(fields))).metadata
    assert (meta["trace_id"], meta["span_id"]) == ("ab" * 16, "cd" * 8)
    assert "parent_span_id" not in meta


def test_capture_timestamp_wins_over_a_naive_timestamp() -> None:
    naive = datetime(2026, 3, 1, 13, 0, 0)  # a camera host's local clock, an hour ahead of UTC
    _, fields = capture_entry("c", 1, source_url=URL, captured=T0.timestamp() + 0.25, timestamp=naive)
    assert fields["timestamp"] == "2026-03-01T13:00:00"
    frame = ok(parse_entry(encoded(fields), naive_tz=ZoneInfo("Asia/Tokyo")))
    assert frame.captured_at == T0 + timedelta(milliseconds=250)


def test_a_naive_timestamp_alone_is_read_in_the_configured_zone() -> None:
    fields = {"frame_id": "f", "camera_id": "c", "timestamp": "2026-03-01T13:00:00"}
    assert ok(parse_entry(fields)).captured_at == T0 + timedelta(hours=1)  # default: UTC
    assert ok(parse_entry(fields, naive_tz=ZoneInfo("Europe/Warsaw"))).captured_at == T0
    # "None" is absent, so the naive timestamp is all there is.
    assert (
        ok(parse_entry({**fields, "capture_timestamp": "None"}, naive_tz=ZoneInfo("Europe/Warsaw"))).captured_at == T0
    )


def test_an_exact_timestamp_wins_over_capture_timestamp() -> None:
    fields = {"frame_id": "f", "camera_id": "c", "timestamp": "2026-03-01T12:00:00Z", "capture_timestamp": "5"}
    assert ok(parse_entry(fields)).captured_at == T0


def test_capture_timestamp_alone_is_enough() -> None:
    fields = {"frame_id": "f", "camera_id": "c", "capture_timestamp": str(T0.timestamp())}
    assert ok(parse_entry(fields)).captured_at == T0


@pytest.mark.parametrize(
    ("changes", "reason", "detail"),
    [
        ({"camera_id": "None"}, "missing_field", "camera_id"),
        ({"frame_id": "None"}, "missing_field", "frame_id"),
        ({"resolution": "[1920]"}, "invalid_field", "resolution"),
        ({"resolution": "[1920, -1]"}, "invalid_field", "height"),
        ({"resolution": "wide"}, "invalid_field", "resolution"),
        ({"resolution": "[true, 2]"}, "invalid_field", "resolution"),
        ({"capture_timestamp": "soon"}, "invalid_field", "capture_timestamp"),
        ({"capture_timestamp": "2026-03-01T12:00:00"}, "invalid_field", "capture_timestamp"),
        ({"capture_timestamp": "1772366400000"}, "invalid_field", "milliseconds"),
    ],
)
def test_bad_detektr_fields_have_precise_reasons(changes: dict[str, str], reason: str, detail: str) -> None:
    _, fields = capture_entry("c", 1, source_url=URL, captured=T0.timestamp())
    outcome = parse_entry(encoded({**fields, **changes}))
    assert outcome.error is not None, outcome.frame
    assert outcome.error.reason == reason and detail in outcome.error.detail, outcome.error
    assert PASSWORD not in everything_of(outcome)


def test_resolution_fills_in_only_what_is_missing() -> None:
    base = {"frame_id": "f", "camera_id": "c", "timestamp": "1772366400", "resolution": "[640, 360]"}
    assert ok(parse_entry(base)).width == 640
    assert (ok(parse_entry({**base, "width": "320"})).width, ok(parse_entry(base)).height) == (320, 360)
    assert (ok(parse_entry({**base, "resolution": "640, 360"})).height) == 360  # v1's reading of it


def test_json_valued_fields_become_json_and_other_text_stays_text() -> None:
    fields = {
        "frame_id": "f",
        "camera_id": "c",
        "timestamp": "1772366400",
        "zones": '[{"x": 1}]',
        "broken": "{not json",
        "note": "[draft]",
        "plain": "42",
    }
    meta = ok(parse_entry(fields)).metadata
    assert meta == {"zones": [{"x": 1}], "broken": "{not json", "note": "[draft]", "plain": "42"}


def test_none_is_absent_in_the_wrapped_form_too() -> None:
    doc = {"frame_id": "f", "camera_id": "c", "timestamp": 1772366400, "format": "None", "width": "None"}
    frame = ok(parse_entry({"payload": json.dumps(doc)}))
    assert (frame.format, frame.width) == (None, None)


def test_the_evidence_of_a_dead_letter_has_no_password() -> None:
    _, fields = capture_entry("c", 1, source_url=URL, captured=T0.timestamp())
    outcome = parse_entry(encoded({**fields, "metadata": "{oops"}))
    assert outcome.error is not None and outcome.error.reason == "invalid_json"
    assert outcome.raw["source_url"] == REDACTED
    assert PASSWORD not in everything_of(outcome)


@pytest.mark.parametrize(
    "doc_text",
    [
        json.dumps({"frame_id": "f", "camera_id": "c", "timestamp": 1, "src": URL}),
        '{"frame_id": "f", "camera_id": "c", "timestamp": 1, "src": "' + URL.replace("/", "\\/") + '"}',
        '{"frame_id": "f", "camera_id": "c", "timestamp": 1, "src": "' + URL.replace("@1", "\\u00401") + '"}',
        '{"frame_id": "f", "camera_id": "c", "timestamp": 1, "src": "' + URL.replace("://", "\\u003a//") + '"}',
    ],
)
def test_wrapped_urls_are_redacted_however_the_json_spells_them(doc_text: str) -> None:
    outcome = parse_entry({"payload": doc_text})
    frame = ok(outcome)
    assert frame.metadata["src"] == REDACTED
    assert PASSWORD not in frame.model_dump_json()


def test_the_zone_setting_is_validated() -> None:
    assert Settings(capture_naive_timezone="Europe/Warsaw").capture_timezone == ZoneInfo("Europe/Warsaw")
    assert Settings().capture_timezone == ZoneInfo("UTC")
    with pytest.raises(ValidationError, match="IANA"):
        Settings(capture_naive_timezone="Mars/Olympus")


# --- fuzzing -------------------------------------------------------------------------------------

# Passwords as camera vendors allow them, unencoded: anything but whitespace, with a unique start.
passwords = st.text(st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc")), min_size=0, max_size=24).map(
    lambda tail: f"Zq9{tail}"
)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NONE_ABLE = ["format", "size_bytes", "trace_id", "span_id", "parent_span_id", "capture_timestamp", "resolution"]


@FUZZ
@given(
    password=passwords,
    user=st.sampled_from(["admin", "", "viewer.1"]),
    resolution=st.tuples(st.integers(0, 100_000), st.integers(0, 100_000)),
    captured=st.floats(0, 4e9),
    nones=st.sets(st.sampled_from(NONE_ABLE)),
    zone=st.sampled_from(["UTC", "Europe/Warsaw", "America/New_York", "Asia/Kolkata"]),
    naive=st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(9998, 1, 1)),
)
def test_fuzz_detektr_entries(
    password: str,
    user: str,
    resolution: tuple[int, int],
    captured: float,
    nones: set[str],
    zone: str,
    naive: datetime,
) -> None:
    url = f"rtsp://{user}:{password}@10.0.0.{len(password)}:554/stream"
    fid, fields = capture_entry("cam", 1, source_url=url, captured=captured, timestamp=naive, resolution=resolution)
    fields.update(dict.fromkeys(nones, "None"))
    fields["tags"] = json.dumps({"backup": url})
    outcome = parse_entry(encoded(fields), "1-0", naive_tz=ZoneInfo(zone))
    assert password not in everything_of(outcome)
    frame = ok(outcome)
    assert frame.frame_key == f"frame:{fid}"
    if "resolution" not in nones:
        assert (frame.width, frame.height) == resolution
    expected = (
        datetime.fromtimestamp(captured, UTC)
        if "capture_timestamp" not in nones
        else naive.replace(tzinfo=ZoneInfo(zone))
    )
    assert frame.captured_at == expected
    assert not {"trace_id", "span_id", "parent_span_id"} & set(frame.metadata)
    assert frame.metadata["tags"]["backup"].endswith(f"@10.0.0.{len(password)}:554/stream")


@FUZZ
@given(password=passwords, noise=st.dictionaries(st.text(max_size=10), st.text(max_size=30), max_size=5))
def test_fuzz_no_password_survives_a_bad_entry(password: str, noise: dict[str, str]) -> None:
    fields: dict[str, Any] = {**noise, "source_url": f"rtsp://u:{password}@h/x", "camera_id": "None"}
    outcome = parse_entry(fields, "1-0")
    assert outcome.frame is None
    assert password not in everything_of(outcome)
