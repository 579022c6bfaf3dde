"""The relay's pure parts: detektr's field format of a routed frame, and which processors have a queue."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from agents.registry_fold import fold_control
from app.configs import registry_config
from core.settings import Settings
from frame_buffer_sdk.models import ControlEvent, ProcessorSpec, RoutedFrame
from relay.fields import stream_fields
from relay.queues import Queue, processor_key, queue_of, registry_changelog

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
# What detektr's FrameDistributor.dispatch_to_processor writes, and so what its processors read.
DETEKTR_FIELDS = {
    "frame_id",
    "camera_id",
    "timestamp",
    "size_bytes",
    "width",
    "height",
    "format",
    "trace_context",
    "metadata",
    "priority",
    "storage_path",
    "storage_backend",
}


def routed(**changes: object) -> RoutedFrame:
    values: dict[str, object] = {
        "frame_id": "f-1",
        "camera_id": "cam-1",
        "captured_at": T0,
        "width": 640,
        "height": 360,
        "format": "bgr24",
        "size_bytes": 691200,
        "priority": 3,
        "frame_key": "frame:f-1",
        "metadata": {"zone": [1, 2]},
        "traceparent": TP,
        "processor_id": "yolo",
        "capability": "object_detection",
        "routed_at": T0,
    }
    values.update(changes)
    return RoutedFrame.model_validate(values)


def test_a_routed_frame_in_detektrs_fields() -> None:
    fields = stream_fields(routed())
    assert set(fields) >= DETEKTR_FIELDS
    assert fields["timestamp"] == "2026-03-01T12:00:00+00:00"
    assert (fields["width"], fields["height"], fields["size_bytes"], fields["priority"]) == (
        "640",
        "360",
        "691200",
        "3",
    )
    assert (fields["storage_path"], fields["storage_backend"], fields["format"]) == ("frame:f-1", "redis", "bgr24")
    assert json.loads(fields["metadata"]) == {"zone": [1, 2]}
    assert json.loads(fields["trace_context"]) == {"traceparent": TP}
    assert fields["capability"] == "object_detection"


def test_the_routing_spans_context_wins_and_absent_values_are_not_none() -> None:
    other = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    fields = stream_fields(routed(width=None, format=None, frame_key=None, size_bytes=None), other, "a=b")
    assert json.loads(fields["trace_context"]) == {"traceparent": other, "tracestate": "a=b"}
    assert (fields["width"], fields["format"], fields["storage_path"], fields["size_bytes"]) == ("0", "", "", "0")


@settings(max_examples=200, deadline=None)
@given(
    frame_id=st.text(min_size=1, max_size=40),
    width=st.none() | st.integers(0, 100_000),
    metadata=st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8) | st.none(), max_size=4),
)
def test_fuzz_every_value_is_text_a_detektr_processor_can_read(
    frame_id: str, width: int | None, metadata: dict[str, object]
) -> None:
    fields = stream_fields(routed(frame_id=frame_id, width=width, metadata=metadata))
    assert all(isinstance(v, str) for v in fields.values())
    assert int(fields["width"]) == (width or 0) and int(fields["height"]) == 360
    assert json.loads(fields["metadata"]) == metadata
    assert datetime.fromisoformat(fields["timestamp"]) == T0


def spec(queue: str | None, capacity: int = 10) -> ProcessorSpec:
    return ProcessorSpec(id="p", capabilities=["x"], capacity=capacity, partitions=None, queue=queue)


def record(queue: str | None, capacity: int = 10) -> bytes:
    """A registry changelog value, as fold_control makes it."""
    event = ControlEvent(kind="register", processor_id="p", spec=spec(queue, capacity))
    return json.dumps(fold_control(None, event, registry_config(Settings()))).encode()


def test_a_processor_has_a_queue_when_its_record_names_one() -> None:
    assert queue_of(record("frames:ready:p", 20)) == Queue("p", "frames:ready:p", 20)
    assert queue_of(record(None)) is None
    assert queue_of(None) is None and queue_of(b"null") is None and queue_of(b"{oops") is None


@pytest.mark.parametrize(("key", "pid"), [(b"p-1", "p-1"), (b'"p-1"', "p-1"), (None, ""), (b'"bad', '"bad')])
def test_changelog_keys(key: bytes | None, pid: str) -> None:
    assert processor_key(key) == pid


def test_the_changelog_is_the_workers_registry_table() -> None:
    assert registry_changelog("fo") == "fo-processors-changelog"


@pytest.mark.parametrize("queue", ["", "has space", ":leading", "x" * 201])
def test_a_queue_is_a_plain_stream_name(queue: str) -> None:
    with pytest.raises(ValidationError, match="queue"):
        spec(queue)
