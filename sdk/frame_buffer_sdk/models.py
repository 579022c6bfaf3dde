"""Records that travel between the services. JSON on the wire, pydantic in code.

These are wire contracts: the bridge writes FrameEvent, the router writes RoutedFrame,
processors write FrameResult, everyone may write DeadLetter. Add fields, never rename.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

PROCESSOR_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# A Redis stream key a processor reads its frames from (detektr's ``frames:ready:<id>``).
QUEUE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:._-]{0,199}$")
CAPABILITY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")
# Bounds of what one registration may ask the registry (a GlobalTable on every worker) to hold.
MAX_CAPABILITIES = 64
METADATA_MAX_BYTES = 16 * 1024
METADATA_MAX_DEPTH = 8


# DeadLetter.source of the letters processors (the SDK) write.
PROCESSOR_SOURCE = "processor"


def utcnow() -> datetime:
    return datetime.now(UTC)


class FrameEvent(BaseModel):
    """One captured frame's metadata. The pixels stay in Redis under frame_key (claim-check)."""

    model_config = ConfigDict(frozen=True)

    frame_id: str = Field(min_length=1, max_length=256)
    camera_id: str = Field(min_length=1, max_length=256)
    captured_at: datetime
    sequence: int | None = Field(None, ge=0)
    width: int | None = Field(None, ge=0, le=100_000)
    height: int | None = Field(None, ge=0, le=100_000)
    format: str | None = Field(None, max_length=64)
    size_bytes: int | None = Field(None, ge=0)
    priority: int = Field(0, ge=0, le=10)
    capabilities: list[str] = Field(default_factory=list)
    frame_key: str | None = Field(None, max_length=1024)
    traceparent: str | None = None
    tracestate: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    stream_id: str | None = None

    @field_validator("captured_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("must be timezone-aware")
        return value

    @field_validator("capabilities")
    @classmethod
    def _capability_names(cls, value: list[str]) -> list[str]:
        for cap in value:
            if not CAPABILITY_RE.match(cap):
                raise ValueError(f"invalid capability name {cap!r}")
        # Order-preserving dedupe: "a,a" must not fan a frame out twice.
        return list(dict.fromkeys(value))


class RoutedFrame(FrameEvent):
    """A frame as a processor receives it on frames.ready.<processor_id>."""

    processor_id: str
    capability: str
    routed_at: datetime


class FrameResult(BaseModel):
    """What a processor publishes to RESULTS_TOPIC."""

    frame_id: str
    camera_id: str
    processor_id: str
    capability: str
    captured_at: datetime
    routed_at: datetime
    processed_at: datetime
    result: dict[str, Any] = Field(default_factory=dict)


class DeadLetter(BaseModel):
    """Why a record could not go on. Nothing is dropped without one of these."""

    reason: str
    detail: str
    frame_id: str | None = None
    camera_id: str | None = None
    stream_id: str | None = None
    capability: str | None = None
    processor_id: str | None = None
    raw: dict[str, Any] = Field(default_factory=dict)
    at: datetime = Field(default_factory=utcnow)
    # Who wrote it: "processor" for the SDK's (the workers count those; their own they count
    # as they write them). None from writers that predate the field.
    source: str | None = Field(default=None, max_length=64)


class ProcessorStatus(StrEnum):
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    STALLED = "stalled"
    DRAINING = "draining"
    DEREGISTERED = "deregistered"


class ProcessorSpec(BaseModel):
    """What a processor says about itself when it registers (REST body)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=PROCESSOR_ID_RE.pattern)
    capabilities: list[str] = Field(min_length=1, max_length=MAX_CAPABILITIES)
    capacity: int = Field(100, ge=1, le=10_000_000)
    stateful: bool = False
    partitions: int | None = Field(None, ge=1, le=1024)
    metadata: dict[str, Any] = Field(default_factory=dict)
    # Set by processors that read a Redis stream (detektr's ProcessorClient): the relay service
    # mirrors the processor's topic into this stream. Unset: the processor consumes its topic.
    queue: str | None = Field(default=None, pattern=QUEUE_RE.pattern)

    @field_validator("capabilities")
    @classmethod
    def _capability_names(cls, value: list[str]) -> list[str]:
        for cap in value:
            if not CAPABILITY_RE.match(cap):
                raise ValueError(f"invalid capability name {cap!r}")
        return sorted(set(value))

    @field_validator("metadata")
    @classmethod
    def _metadata_bounds(cls, value: dict[str, Any]) -> dict[str, Any]:
        if json_depth(value) > METADATA_MAX_DEPTH:
            raise ValueError(f"nested deeper than {METADATA_MAX_DEPTH} levels")
        try:
            size = len(json.dumps(value, separators=(",", ":")).encode())
        except (TypeError, ValueError) as exc:
            raise ValueError(f"must be JSON: {exc}") from None
        if size > METADATA_MAX_BYTES:
            raise ValueError(f"{size} bytes as JSON; at most {METADATA_MAX_BYTES}")
        return value


def json_depth(value: Any) -> int:
    """Nesting depth of containers, counted without recursion (a hostile body may be deep);
    past METADATA_MAX_DEPTH it stops counting and returns METADATA_MAX_DEPTH + 1."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list | tuple) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        if depth > METADATA_MAX_DEPTH:
            return depth  # deep enough to refuse; no need to walk the rest
        stack.extend((child, depth + 1) for child in children)
    return deepest


class ProcessorRecord(ProcessorSpec):
    """A processor as the registry holds it."""

    model_config = ConfigDict(extra="ignore")

    partitions: int = Field(4, ge=1, le=1024)
    topic: str
    consumer_group: str
    status: ProcessorStatus = ProcessorStatus.HEALTHY
    last_heartbeat: datetime
    registered_at: datetime
    status_reason: str = ""
    # Replicas share the id (and its topic and group): replica id -> its last register or
    # heartbeat. The id leaves the registry only when the last live replica deregisters.
    replicas: dict[str, datetime] = Field(default_factory=dict)


class ControlEvent(BaseModel):
    """An event on processors.control, keyed by processor id, folded into the registry."""

    kind: Literal["register", "update", "heartbeat", "deregister", "status"]
    processor_id: str
    at: datetime = Field(default_factory=utcnow)
    spec: ProcessorSpec | None = None
    status: ProcessorStatus | None = None
    reason: str = ""
    # Which replica of the processor sent it (SDK processes); None: the id as a whole.
    replica: str | None = Field(default=None, max_length=256)
