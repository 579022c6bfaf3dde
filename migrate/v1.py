"""frame-buffer v1's Redis state, read into our records. Pure: no I/O.

v1 (hretheum/detektr ``services/frame-buffer`` and ``frame-buffer-v2``) leaves four things:

* its consumer group on the capture stream (``frame-buffer-group``), which acks on read into
  an in-memory buffer: what it never acknowledged never reached a processor;
* ``frame_queue``: frames enqueued and never dequeued, field ``frame_data`` holding JSON
  (plus the trace context fields ``inject_to_carrier`` adds);
* ``frame_dlq``: field ``frame`` holding ``str(frame_dict)`` (a Python repr, not JSON) and
  ``reason`` (``buffer_full``);
* ``processors:registry``: a hash, processor id -> ``json.dumps(ProcessorInfo.to_redis_hash())``,
  whose ``capabilities`` and ``metadata`` are JSON text again and ``capacity`` a string.
"""

from __future__ import annotations

import ast
import json
import math
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from frame_buffer_sdk.errors import FrameBufferError
from frame_buffer_sdk.models import DeadLetter, ProcessorSpec
from frame_buffer_sdk.redact import redact_text, redact_value

DEFAULT_GROUP = "frame-buffer-group"
DEFAULT_QUEUE = "frame_queue"
DEFAULT_DLQ = "frame_dlq"
DEFAULT_REGISTRY = "processors:registry"

REASON_PREFIX = "v1:"
# Beyond this a repr is not parsed: literal_eval's cost grows with it, and no frame is that big.
MAX_REPR_CHARS = 1_000_000
MAX_RAW_TEXT_CHARS = 16_384
# A field the replayed entry carries, naming where it came from (it lands in the frame's metadata).
ORIGIN_FIELD = "v1_queue_id"


@dataclass(frozen=True, slots=True)
class V1Names:
    """Where v1 kept its state; each a --v1-* flag of ``migrate``."""

    group: str = DEFAULT_GROUP
    queue: str = DEFAULT_QUEUE
    dlq: str = DEFAULT_DLQ
    registry: str = DEFAULT_REGISTRY


class NotImportable(FrameBufferError, ValueError):
    """A v1 record that cannot become one of ours; the message says why."""


def replay_fields(stream_id: str, fields: dict[str, str]) -> dict[str, str]:
    """The capture-stream entry that hands a ``frame_queue`` entry to our bridge.

    ``frame_data`` travels whole as the wrapped form (``payload``), so nothing of it is lost in
    a flattening; text that is no JSON object is replayed as it is and dead-lettered by the
    bridge with its evidence, rather than dropped here.
    """
    if "frame_data" not in fields:
        return {**fields, ORIGIN_FIELD: stream_id}
    text = fields["frame_data"]
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        doc = None
    if not isinstance(doc, dict):
        return {"payload": text, ORIGIN_FIELD: stream_id}
    for name in ("traceparent", "tracestate"):
        if fields.get(name) and name not in doc:
            doc[name] = fields[name]
    doc[ORIGIN_FIELD] = stream_id
    return {"payload": json.dumps(doc)}


class _FloatNames(ast.NodeTransformer):
    """``repr(float("inf"))`` is ``inf``, a name to literal_eval; JSON let v1's frames hold it."""

    _VALUES = {"inf": math.inf, "nan": math.nan}

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in self._VALUES:
            return ast.copy_location(ast.Constant(self._VALUES[node.id]), node)
        return node


def _literal(text: str) -> dict[str, Any]:
    if len(text) > MAX_REPR_CHARS:
        raise NotImportable(f"frame repr of {len(text)} characters is longer than {MAX_REPR_CHARS}")
    try:
        value = ast.literal_eval(_FloatNames().visit(ast.parse(text.strip(), mode="eval")))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        raise NotImportable(f"frame is not a Python literal ({type(exc).__name__})") from None
    if not isinstance(value, dict):
        raise NotImportable(f"frame is a {type(value).__name__}, not a dict")
    try:
        # Through JSON so the record can be sent: tuples become lists, odd keys strings.
        plain = json.loads(json.dumps(value, default=str, ensure_ascii=False))
    except (ValueError, TypeError, RecursionError) as exc:
        raise NotImportable(f"frame does not fit in JSON ({exc})") from None
    return plain  # type: ignore[no-any-return]


def _text_id(value: Any) -> str | None:
    if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
        return redact_text(str(value))[:256]
    return None


def dead_letter(stream_id: str, fields: dict[str, str], dlq: str = DEFAULT_DLQ) -> DeadLetter:
    """A ``frame_dlq`` entry as our dead letter; an unparseable one keeps its raw text as evidence."""
    reason = REASON_PREFIX + (fields.get("reason") or "unknown")
    text = fields.get("frame", "")
    evidence: dict[str, Any] = {
        k: redact_text(v)[:MAX_RAW_TEXT_CHARS] for k, v in fields.items() if k not in ("frame", "reason")
    }
    try:
        frame = redact_value(_literal(text))
    except NotImportable as exc:
        return DeadLetter(
            reason=reason,
            detail=f"frame-buffer v1 dead letter from {dlq}; {exc}: kept as raw text",
            stream_id=stream_id,
            raw={**evidence, "frame": redact_text(text)[:MAX_RAW_TEXT_CHARS]},
        )
    return DeadLetter(
        reason=reason,
        detail=f"frame-buffer v1 dead letter from {dlq}",
        frame_id=_text_id(frame.get("frame_id")),
        camera_id=_text_id(frame.get("camera_id")),
        stream_id=stream_id,
        raw={**evidence, "frame": frame},
    )


def _json_or(value: Any) -> Any:
    """v1 stores some values as JSON text inside its JSON document."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            return value
    return value


def processor_spec(processor_id: str, value: str) -> ProcessorSpec:
    """A ``processors:registry`` entry as the spec our REST API takes, its ``queue`` kept; v1's
    endpoints go to ``metadata.v1``."""
    try:
        doc = json.loads(value)
    except (ValueError, RecursionError):
        raise NotImportable("registry value is not JSON") from None
    if not isinstance(doc, dict):
        raise NotImportable(f"registry value is a JSON {type(doc).__name__}, not an object")
    if doc.get("id", processor_id) != processor_id:
        raise NotImportable(f"registry value names id {doc.get('id')!r:.80}, not its key")
    capabilities = _json_or(doc.get("capabilities"))
    metadata = _json_or(doc.get("metadata")) or {}
    if not isinstance(metadata, dict):
        raise NotImportable("metadata is not a JSON object")
    try:
        capacity = int(doc.get("capacity", 10))
    except (TypeError, ValueError):
        raise NotImportable(f"capacity {doc.get('capacity')!r:.40} is not an integer") from None
    queue = doc.get("queue")
    v1 = {k: redact_value(doc[k]) for k in ("endpoint", "health_endpoint") if doc.get(k)}
    try:
        return ProcessorSpec(
            id=processor_id,
            capabilities=capabilities,
            capacity=capacity,
            partitions=None,
            # detektr's processors read this stream: the relay goes on delivering there.
            queue=queue if isinstance(queue, str) and queue else None,
            metadata=redact_value({**metadata, "v1": v1}) if v1 else redact_value(metadata),
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "spec"
        raise NotImportable(f"{where}: {err['msg']}") from None
