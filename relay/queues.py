"""Which processors read a Redis stream, from their registry records. Pure: no I/O."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tables.registry import NAME as REGISTRY_TABLE


@dataclass(frozen=True, slots=True)
class Queue:
    processor_id: str
    stream: str
    capacity: int  # entries the processor may have unread or unacknowledged before the relay waits


def registry_changelog(app_id: str) -> str:
    """The workers' registry, compacted: every registered processor's latest record, whatever its age."""
    return f"{app_id}-{REGISTRY_TABLE}-changelog"


def processor_key(key: bytes | None) -> str:
    """A changelog key: the processor id, as raw text or as a JSON string."""
    text = (key or b"").decode("utf-8", "replace")
    if text.startswith('"'):
        try:
            decoded = json.loads(text)
        except ValueError:
            return text
        return decoded if isinstance(decoded, str) else text
    return text


def queue_of(value: bytes | None) -> Queue | None:
    """The queue a changelog value (a ProcessorRecord as JSON, or a tombstone) names, if any."""
    if not value:
        return None
    try:
        record: Any = json.loads(value)
    except ValueError:
        return None
    if not isinstance(record, dict) or not record.get("queue") or not isinstance(record.get("id"), str):
        return None
    capacity = record.get("capacity")
    return Queue(record["id"], str(record["queue"]), capacity if isinstance(capacity, int) and capacity > 0 else 1)
