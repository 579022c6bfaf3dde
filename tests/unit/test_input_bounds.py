"""Bounds on what one caller may ask of the orchestrator, each refused naming the field."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from pydantic import ValidationError

from core.settings import Settings
from frame_buffer_sdk.logs import EscapedRecord, escape_controls
from frame_buffer_sdk.models import MAX_CAPABILITIES, METADATA_MAX_BYTES, METADATA_MAX_DEPTH, ProcessorSpec
from frame_buffer_sdk.names import find_collision


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


def refused_field(**spec: Any) -> set[str]:
    with pytest.raises(ValidationError) as caught:
        ProcessorSpec.model_validate({"id": "p1", "capabilities": ["x"], **spec})
    return {".".join(str(p) for p in e["loc"]) for e in caught.value.errors()}


def test_capabilities_metadata_size_and_depth_are_bounded() -> None:
    many = [f"c{i}" for i in range(MAX_CAPABILITIES + 1)]
    assert refused_field(capabilities=many) == {"capabilities"}
    assert ProcessorSpec(id="p1", capabilities=many[:MAX_CAPABILITIES]).capabilities
    assert refused_field(metadata={"blob": "x" * METADATA_MAX_BYTES}) == {"metadata"}
    assert refused_field(metadata=nested(METADATA_MAX_DEPTH + 1)) == {"metadata"}
    assert ProcessorSpec(id="p1", capabilities=["x"], metadata=nested(METADATA_MAX_DEPTH)).metadata
    # Far deeper than Python's recursion limit: refused, not a RecursionError.
    assert refused_field(metadata=nested(50_000)) == {"metadata"}


def test_topic_names_differing_only_by_dot_or_underscore_collide() -> None:
    topics = {"det.v2": "frames.ready.det.v2", "ocr": "frames.ready.ocr"}
    assert find_collision("frames.ready.det_v2", topics) == "det.v2"
    assert find_collision("frames.ready.det.v2", topics) is None  # the same topic is no collision
    assert find_collision("frames.ready.det-v2", topics) is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"ready_topic_prefix": ""}, "ready_topic_prefix"),
        ({"ready_topic_prefix": "frames ready"}, "ready_topic_prefix"),
        ({"ready_topic_prefix": "f" * 200}, "ready_topic_prefix"),
        ({"ready_topic_prefix": "frames."}, "CAPTURED_TOPIC"),
        ({"ready_topic_prefix": "processors_"}, "CONTROL_TOPIC"),
        ({"processor_partitions": 65}, "PROCESSOR_MAX_PARTITIONS"),
    ],
)
def test_bad_topic_prefix_and_partition_defaults_fail_at_start(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**overrides)


def test_control_characters_in_our_log_lines_are_escaped() -> None:
    assert escape_controls("cam\n2026 INFO forged\x1b[2J") == "cam\\n2026 INFO forged\\x1b[2J"
    ours = EscapedRecord("app.web", logging.INFO, __file__, 1, "processor %s", ("evil\nline",), None)
    theirs = EscapedRecord("faust.worker", logging.INFO, __file__, 1, "banner\n%s", ("x",), None)
    assert ours.getMessage() == "processor evil\\nline"
    assert theirs.getMessage() == "banner\nx"
