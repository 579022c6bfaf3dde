"""Which processors read a Redis stream, folded from the control topic. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass

from app.models import ControlEvent


@dataclass(frozen=True, slots=True)
class Queue:
    processor_id: str
    stream: str
    capacity: int  # entries the processor may have unread or unacknowledged before the relay waits


def fold_queue(current: Queue | None, event: ControlEvent) -> Queue | None:
    """The processor's queue after ``event``: a (re-)registration or update names it or drops it."""
    if event.kind in ("register", "update") and event.spec is not None:
        spec = event.spec
        return Queue(spec.id, spec.queue, spec.capacity) if spec.queue else None
    if event.kind == "deregister":
        return None
    return current
