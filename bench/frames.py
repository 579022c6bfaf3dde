"""The synthetic frames every benchmarked system carries, and how a receiver reads them back.

A frame is the flat capture-stream form (every value a string). Its ``frame_id`` is
``<tag>:<sequence>``: the tag names the measurement it belongs to, so frames of a
warm-up or of an earlier, slower step that arrive late never pollute the next step.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

# What XREADGROUP answers: [(stream, [(entry id, {field: value})])].
StreamReply = list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]

WIDTH = "1920"
HEIGHT = "1080"
FORMAT = "jpeg"
SIZE_BYTES = "262144"
PRIORITY = "1"


def capability_of(camera_index: int, capabilities: list[str]) -> str:
    """Each camera asks for one capability, spread evenly: every processor gets a third of the load."""
    return capabilities[camera_index % len(capabilities)]


def flat_fields(tag: str, seq: int, camera_index: int, capability: str, captured_at: float) -> dict[str, str]:
    frame_id = f"{tag}:{seq}"
    return {
        "frame_id": frame_id,
        "camera_id": f"cam-{camera_index:03d}",
        "timestamp": repr(captured_at),
        "width": WIDTH,
        "height": HEIGHT,
        "format": FORMAT,
        "size_bytes": SIZE_BYTES,
        "priority": PRIORITY,
        "capabilities": capability,
        "frame_key": f"frame:{frame_id}",
    }


def decode_stream_fields(fields: dict[Any, Any]) -> dict[str, str]:
    return {
        (k.decode() if isinstance(k, bytes) else str(k)): (v.decode() if isinstance(v, bytes) else str(v))
        for k, v in fields.items()
    }


def tag_and_captured(doc: dict[str, Any]) -> tuple[str, float]:
    """(tag, captured_at epoch) of a received frame: flat form (``timestamp``) or RoutedFrame (``captured_at``)."""
    frame_id = str(doc["frame_id"])
    tag = frame_id.rpartition(":")[0]
    ts = doc.get("timestamp")
    if ts is not None:
        return tag, float(ts)
    return tag, datetime.fromisoformat(str(doc["captured_at"])).timestamp()


def parse_json_frame(value: bytes) -> tuple[str, float]:
    return tag_and_captured(json.loads(value))
