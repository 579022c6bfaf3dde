"""Decoding captured frames fast, with pydantic's verdict wherever the fast path declines.

msgspec decodes a frame into a Struct carrying FrameEvent's constraints at a fraction of
pydantic's cost. It is stricter than pydantic (no numbers in strings, no naive datetimes), so
a frame it refuses is re-validated by FrameEvent: pydantic alone decides what is invalid,
and its error names the field for the dead letter. The fuzz test holds the two to the same
verdict wherever msgspec accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import msgspec
from pydantic import ValidationError

from frame_buffer_sdk.models import CAPABILITY_RE, FrameEvent

_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
_Dim = Annotated[int, msgspec.Meta(ge=0, le=100_000)]
_Capability = Annotated[str, msgspec.Meta(pattern=CAPABILITY_RE.pattern)]


class FrameStruct(msgspec.Struct, frozen=True):
    frame_id: _Id
    camera_id: _Id
    captured_at: Annotated[datetime, msgspec.Meta(tz=True)]
    sequence: Annotated[int, msgspec.Meta(ge=0)] | None = None
    width: _Dim | None = None
    height: _Dim | None = None
    format: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    size_bytes: Annotated[int, msgspec.Meta(ge=0)] | None = None
    priority: Annotated[int, msgspec.Meta(ge=0, le=10)] = 0
    capabilities: list[_Capability] = msgspec.field(default_factory=list)
    frame_key: Annotated[str, msgspec.Meta(max_length=1024)] | None = None
    traceparent: str | None = None
    tracestate: str | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    stream_id: str | None = None


_DECODER = msgspec.json.Decoder(FrameStruct)
# Fields a routed record adds; a frame already holding one (a re-sent routed record) is
# re-encoded instead of spliced, so the record never carries a key twice.
_ROUTED_KEYS = (b'"processor_id"', b'"capability"', b'"routed_at"')


@dataclass(slots=True)
class Frame:
    """What routing reads of one frame, plus its JSON as it arrived (spliced into routed records)."""

    frame_id: str
    camera_id: str
    priority: int
    capabilities: list[str]
    metadata: dict[str, Any]
    traceparent: str | None
    tracestate: str | None
    stream_id: str | None
    body: bytes  # the frame's JSON object without its closing brace
    frame_key: str | None = None  # where its pixels are: kept alive while the frame is held

    def event(self) -> FrameEvent:
        """The pydantic model, for the rare paths (dead letters, held frames) that need one."""
        return FrameEvent.model_validate_json(self.body + b"}")

    def routed(self, processor_id: str, capability: str, routed_at: str) -> bytes:
        """The RoutedFrame JSON: the frame's own fields with the routing fields spliced in."""
        return b"%s,%s}" % (
            self.body,
            msgspec.json.encode({"processor_id": processor_id, "capability": capability, "routed_at": routed_at})[1:-1],
        )


@dataclass(frozen=True, slots=True)
class Invalid:
    """A record that is not a frame, with pydantic's reason naming the field."""

    where: str
    message: str


def decode_frame(value: bytes) -> Frame | Invalid:
    try:
        s = _DECODER.decode(value)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return _decode_slow(value)
    body = value.rstrip()
    if body[-1:] != b"}" or any(k in body for k in _ROUTED_KEYS):
        return _decode_slow(value)
    caps = s.capabilities
    if len(caps) > 1:
        caps = list(dict.fromkeys(caps))  # "a,a" must not fan a frame out twice
    return Frame(
        s.frame_id,
        s.camera_id,
        s.priority,
        caps,
        s.metadata,
        s.traceparent,
        s.tracestate,
        s.stream_id,
        body[:-1],
        s.frame_key,
    )


def _decode_slow(value: bytes) -> Frame | Invalid:
    try:
        event = FrameEvent.model_validate_json(value)
    except ValidationError as exc:
        err = exc.errors()[0]
        return Invalid(".".join(str(p) for p in err["loc"]) or "record", err["msg"])
    return from_event(event)


def from_event(event: FrameEvent) -> Frame:
    body = event.model_dump_json().encode()
    return Frame(
        event.frame_id,
        event.camera_id,
        event.priority,
        list(event.capabilities),
        event.metadata,
        event.traceparent,
        event.tracestate,
        event.stream_id,
        body[:-1],
        event.frame_key,
    )
