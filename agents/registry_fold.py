"""How a control event changes a processor's registry record. Pure: no Faust, no I/O."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agents.config import RegistryConfig
from frame_buffer_sdk.errors import FrameBufferError
from frame_buffer_sdk.models import ControlEvent, ProcessorRecord, ProcessorStatus


class UnknownProcessor(FrameBufferError, LookupError):
    """A heartbeat, update or status for an id that is not registered."""


def live_replicas(record: ProcessorRecord | None, at: datetime, config: RegistryConfig) -> dict[str, datetime]:
    """The replicas of ``record`` heard from within the replica window before ``at``."""
    if record is None:
        return {}
    since = at - config.replica_window
    return {replica: seen for replica, seen in record.replicas.items() if seen >= since}


def _seen(replicas: dict[str, datetime], replica: str | None, at: datetime) -> dict[str, datetime]:
    if replica is None:
        return replicas
    return {**replicas, replica: max(replicas.get(replica, at), at)}


def last_replica_leaving(
    record: ProcessorRecord | None, replica: str | None, at: datetime, config: RegistryConfig
) -> bool:
    """True when ``replica`` leaving (None: the id as a whole) leaves no live replica behind."""
    if replica is None:
        return True
    return not (set(live_replicas(record, at, config)) - {replica})


def fold_control(current: dict[str, Any] | None, event: ControlEvent, config: RegistryConfig) -> dict[str, Any] | None:
    """The record after ``event``; None means the processor is gone from the registry.

    Re-registering an existing id updates it in place and keeps registered_at: a
    restarted processor is never refused. Events naming a replica keep the replica set up to
    date; a replica's deregister removes the id only when no other live replica remains.
    """
    record = ProcessorRecord.model_validate(current) if current else None
    replicas = _seen(live_replicas(record, event.at, config), event.replica, event.at)
    if event.kind in ("register", "update"):
        if event.spec is None:
            raise ValueError(f"{event.kind} event without spec")
        if event.kind == "update" and record is None:
            raise UnknownProcessor(event.processor_id)
        spec = event.spec
        partitions = spec.partitions or (record.partitions if record else config.processor_partitions)
        if event.kind == "register":
            # A register may name its status: an import arrives unhealthy in one event, so no
            # reader ever sees it healthy before its first heartbeat.
            status = event.status or ProcessorStatus.HEALTHY
            reason = event.reason if event.status is not None else "registered"
        else:
            status, reason = record.status, record.status_reason  # type: ignore[union-attr]
        return ProcessorRecord(
            **spec.model_dump(exclude={"partitions"}),
            partitions=partitions,
            topic=config.names.ready_topic(spec.id),
            consumer_group=config.names.processor_group(spec.id),
            status=status,
            last_heartbeat=event.at,
            registered_at=record.registered_at if record else event.at,
            status_reason=reason,
            replicas=replicas,
        ).model_dump(mode="json")
    if record is None:
        if event.kind == "deregister":
            return None
        raise UnknownProcessor(event.processor_id)
    if event.kind == "deregister":
        if last_replica_leaving(record, event.replica, event.at, config):
            return None
        # Siblings still serve this id: only the leaving replica goes.
        remaining = {r: seen for r, seen in replicas.items() if r != event.replica}
        return record.model_copy(update={"replicas": remaining}).model_dump(mode="json")
    if event.kind == "heartbeat":
        # A heartbeat refreshes liveness only; recovery to healthy is the health monitor's call,
        # except from draining: only the processor says it drains, so only it says it stopped.
        update: dict[str, Any] = {"last_heartbeat": max(record.last_heartbeat, event.at), "replicas": replicas}
        if record.status is ProcessorStatus.DRAINING and event.status is ProcessorStatus.HEALTHY:
            update.update(status=ProcessorStatus.HEALTHY, status_reason="healthy heartbeat after draining")
        return record.model_copy(update=update).model_dump(mode="json")
    # kind == "status": the health monitor's verdict
    if event.status is None:
        raise ValueError("status event without status")
    return record.model_copy(update={"status": event.status, "status_reason": event.reason}).model_dump(mode="json")
