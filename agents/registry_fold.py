"""How a control event changes a processor's registry record. Pure: no Faust, no I/O."""

from __future__ import annotations

from typing import Any

from app.models import ControlEvent, ProcessorRecord, ProcessorStatus
from app.settings import Settings


class UnknownProcessor(LookupError):
    """A heartbeat, update or status for an id that is not registered."""


def fold_control(current: dict[str, Any] | None, event: ControlEvent, settings: Settings) -> dict[str, Any] | None:
    """The record after ``event``; None means the processor is gone from the registry.

    Re-registering an existing id updates it in place and keeps registered_at: a
    restarted processor is never refused.
    """
    record = ProcessorRecord.model_validate(current) if current else None
    if event.kind in ("register", "update"):
        if event.spec is None:
            raise ValueError(f"{event.kind} event without spec")
        if event.kind == "update" and record is None:
            raise UnknownProcessor(event.processor_id)
        spec = event.spec
        partitions = spec.partitions or (record.partitions if record else settings.processor_partitions)
        return ProcessorRecord(
            **spec.model_dump(exclude={"partitions"}),
            partitions=partitions,
            topic=settings.ready_topic(spec.id),
            consumer_group=settings.processor_group(spec.id),
            status=ProcessorStatus.HEALTHY if event.kind == "register" else record.status,  # type: ignore[union-attr]
            last_heartbeat=event.at,
            registered_at=record.registered_at if record else event.at,
            status_reason="registered" if event.kind == "register" else record.status_reason,  # type: ignore[union-attr]
        ).model_dump(mode="json")
    if record is None:
        if event.kind == "deregister":
            return None
        raise UnknownProcessor(event.processor_id)
    if event.kind == "deregister":
        return None
    if event.kind == "heartbeat":
        # A heartbeat refreshes liveness only; recovery to healthy is the health monitor's call,
        # except from draining: only the processor says it drains, so only it says it stopped.
        update: dict[str, Any] = {"last_heartbeat": max(record.last_heartbeat, event.at)}
        if record.status is ProcessorStatus.DRAINING and event.status is ProcessorStatus.HEALTHY:
            update.update(status=ProcessorStatus.HEALTHY, status_reason="healthy heartbeat after draining")
        return record.model_copy(update=update).model_dump(mode="json")
    # kind == "status": the health monitor's verdict
    if event.status is None:
        raise ValueError("status event without status")
    return record.model_copy(update={"status": event.status, "status_reason": event.reason}).model_dump(mode="json")
