"""The fast frame decoder never accepts what pydantic refuses, and reads what pydantic reads."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from agents.frame_decode import Frame, Invalid, decode_frame
from frame_buffer_sdk.models import FrameEvent, RoutedFrame

_TEXT = st.text(max_size=300)
_ANY_INT = st.one_of(st.integers(min_value=-5, max_value=200_000), st.booleans(), st.floats(allow_nan=False))
_CAPS = st.lists(st.one_of(st.sampled_from(["det", "face", "ocr:v2"]), _TEXT), max_size=4)
_TIMES = st.one_of(
    st.sampled_from(["2024-01-01T00:00:00Z", "2024-01-01T00:00:00", "2024-01-01T00:00:00.123+02:00", "yesterday"]),
    st.integers(min_value=0, max_value=2_000_000_000),
)

frames = st.fixed_dictionaries(
    {"frame_id": st.one_of(st.just("f1"), _TEXT), "camera_id": st.one_of(st.just("cam"), _TEXT), "captured_at": _TIMES},
    optional={
        "sequence": _ANY_INT,
        "width": _ANY_INT,
        "height": _ANY_INT,
        "format": st.one_of(st.none(), _TEXT),
        "size_bytes": _ANY_INT,
        "priority": _ANY_INT,
        "capabilities": _CAPS,
        "frame_key": st.one_of(st.none(), _TEXT),
        "traceparent": st.one_of(st.none(), _TEXT),
        "metadata": st.dictionaries(_TEXT, st.one_of(st.integers(), _TEXT), max_size=3),
        "stream_id": st.one_of(st.none(), st.just("1-0")),
    },
)


def pydantic_verdict(value: bytes) -> FrameEvent | None:
    try:
        return FrameEvent.model_validate_json(value)
    except ValidationError:
        return None


@settings(max_examples=400, deadline=None)
@given(frames)
def test_the_fast_path_agrees_with_pydantic(doc: dict[str, Any]) -> None:
    value = json.dumps(doc).encode()
    decoded = decode_frame(value)
    expected = pydantic_verdict(value)
    if expected is None:
        assert isinstance(decoded, Invalid)
        return
    assert isinstance(decoded, Frame)
    assert (decoded.frame_id, decoded.camera_id, decoded.priority) == (
        expected.frame_id,
        expected.camera_id,
        expected.priority,
    )
    assert decoded.capabilities == expected.capabilities
    assert decoded.metadata == expected.metadata
    routed = RoutedFrame.model_validate_json(decoded.routed("det-a", "det", "2024-01-01T00:00:00+00:00"))
    assert routed.model_dump(exclude={"processor_id", "capability", "routed_at"}) == expected.model_dump()
    assert (routed.processor_id, routed.capability) == ("det-a", "det")


def test_a_re_sent_routed_record_is_re_encoded_not_spliced_twice() -> None:
    routed = RoutedFrame(
        frame_id="f",
        camera_id="c",
        captured_at=datetime.now(UTC),
        processor_id="old",
        capability="det",
        routed_at=datetime.now(UTC),
    )
    decoded = decode_frame(routed.model_dump_json().encode())
    assert isinstance(decoded, Frame)
    value = decoded.routed("new", "det", "2024-01-01T00:00:00+00:00")
    assert value.count(b'"processor_id"') == 1 and json.loads(value)["processor_id"] == "new"


def test_an_invalid_frame_names_its_field() -> None:
    decoded = decode_frame(b'{"frame_id": "x", "camera_id": "c", "captured_at": "2024-01-01T00:00:00"}')
    assert isinstance(decoded, Invalid) and decoded.where == "captured_at" and "timezone" in decoded.message
