from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agents.registry_fold import UnknownProcessor, fold_control
from app.configs import registry_config
from core.settings import Settings
from frame_buffer_sdk.models import ControlEvent, ProcessorSpec, ProcessorStatus

SETTINGS = registry_config(Settings(processor_partitions=3))
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def register(pid: str = "yolo", at: datetime = T0, **spec: object) -> ControlEvent:
    body = {"id": pid, "capabilities": ["object_detection"], **spec}
    return ControlEvent(kind="register", processor_id=pid, spec=ProcessorSpec.model_validate(body), at=at)


def test_register_creates_record_with_topic_and_group() -> None:
    record = fold_control(None, register(capacity=50), SETTINGS)
    assert record is not None
    assert record["topic"] == "frames.ready.yolo"
    assert record["consumer_group"] == "processor.yolo"
    assert record["partitions"] == 3
    assert record["capacity"] == 50
    assert record["status"] == "healthy"


def test_a_register_naming_its_status_arrives_in_it() -> None:
    # The v1 import: unhealthy in the same event, never healthy before a heartbeat.
    event = register().model_copy(update={"status": ProcessorStatus.UNHEALTHY, "reason": "imported from v1"})
    record = fold_control(None, event, SETTINGS)
    assert record is not None
    assert (record["status"], record["status_reason"]) == ("unhealthy", "imported from v1")
    assert fold_control(None, register(), SETTINGS)["status_reason"] == "registered"  # type: ignore[index]


def test_reregister_updates_and_keeps_registered_at() -> None:
    first = fold_control(None, register(at=T0), SETTINGS)
    later = T0 + timedelta(minutes=5)
    second = fold_control(first, register(at=later, capacity=7, partitions=6), SETTINGS)
    assert second is not None
    assert second["registered_at"] == first["registered_at"]  # type: ignore[index]
    assert second["capacity"] == 7 and second["partitions"] == 6
    assert datetime.fromisoformat(second["last_heartbeat"]) == later


def test_reregister_of_unhealthy_processor_makes_it_healthy_again() -> None:
    rec = fold_control(None, register(), SETTINGS)
    rec = fold_control(
        rec, ControlEvent(kind="status", processor_id="yolo", status=ProcessorStatus.UNHEALTHY), SETTINGS
    )
    assert rec is not None and rec["status"] == "unhealthy"
    rec = fold_control(rec, register(at=T0 + timedelta(seconds=1)), SETTINGS)
    assert rec is not None and rec["status"] == "healthy"


def test_heartbeat_refreshes_liveness_but_never_goes_back_in_time() -> None:
    rec = fold_control(None, register(at=T0 + timedelta(seconds=10)), SETTINGS)
    stale = fold_control(rec, ControlEvent(kind="heartbeat", processor_id="yolo", at=T0), SETTINGS)
    assert stale is not None and datetime.fromisoformat(stale["last_heartbeat"]) == T0 + timedelta(seconds=10)
    fresh = fold_control(
        rec, ControlEvent(kind="heartbeat", processor_id="yolo", at=T0 + timedelta(seconds=20)), SETTINGS
    )
    assert fresh is not None and datetime.fromisoformat(fresh["last_heartbeat"]) == T0 + timedelta(seconds=20)


def test_deregister_removes_and_unknown_ids_are_reported() -> None:
    rec = fold_control(None, register(), SETTINGS)
    assert fold_control(rec, ControlEvent(kind="deregister", processor_id="yolo"), SETTINGS) is None
    assert fold_control(None, ControlEvent(kind="deregister", processor_id="ghost"), SETTINGS) is None
    with pytest.raises(UnknownProcessor):
        fold_control(None, ControlEvent(kind="heartbeat", processor_id="ghost"), SETTINGS)
    with pytest.raises(UnknownProcessor):
        fold_control(None, ControlEvent(kind="update", processor_id="ghost", spec=register("ghost").spec), SETTINGS)


def status_event(status: ProcessorStatus, at: datetime = T0) -> ControlEvent:
    return ControlEvent(kind="status", processor_id="yolo", status=status, reason="test", at=at)


def heartbeat(status: ProcessorStatus | None, at: datetime) -> ControlEvent:
    return ControlEvent(kind="heartbeat", processor_id="yolo", status=status, at=at)


def test_draining_ends_with_the_processors_own_healthy_heartbeat() -> None:
    draining = fold_control(fold_control(None, register(), SETTINGS), status_event(ProcessorStatus.DRAINING), SETTINGS)
    assert draining is not None and draining["status"] == "draining"
    # A beat without a status (an older worker's) keeps it draining; a healthy beat ends it.
    kept = fold_control(draining, heartbeat(None, T0 + timedelta(seconds=1)), SETTINGS)
    assert kept is not None and kept["status"] == "draining"
    back = fold_control(kept, heartbeat(ProcessorStatus.HEALTHY, T0 + timedelta(seconds=2)), SETTINGS)
    assert back is not None and back["status"] == "healthy"


def test_a_healthy_heartbeat_does_not_overrule_the_monitors_verdict() -> None:
    record = fold_control(None, register(), SETTINGS)
    for verdict in (ProcessorStatus.UNHEALTHY, ProcessorStatus.STALLED):
        judged = fold_control(record, status_event(verdict), SETTINGS)
        after = fold_control(judged, heartbeat(ProcessorStatus.HEALTHY, T0 + timedelta(seconds=1)), SETTINGS)
        assert after is not None and after["status"] == verdict.value


def beat(replica: str | None, at: datetime, kind: str = "heartbeat") -> ControlEvent:
    return ControlEvent(kind=kind, processor_id="yolo", replica=replica, at=at)  # type: ignore[arg-type]


def test_a_replica_leaving_keeps_the_id_while_a_sibling_lives() -> None:
    window = SETTINGS.heartbeat_interval * SETTINGS.heartbeat_misses
    rec = fold_control(None, register().model_copy(update={"replica": "a"}), SETTINGS)
    rec = fold_control(rec, register(at=T0 + timedelta(seconds=1)).model_copy(update={"replica": "b"}), SETTINGS)
    assert rec is not None and set(rec["replicas"]) == {"a", "b"}

    rec = fold_control(rec, beat("a", T0 + timedelta(seconds=2), "deregister"), SETTINGS)
    assert rec is not None, "b still serves the id"
    assert set(rec["replicas"]) == {"b"}
    assert rec["status"] == "healthy"

    rec = fold_control(rec, beat("b", T0 + timedelta(seconds=3)), SETTINGS)
    assert rec is not None
    assert fold_control(rec, beat("b", T0 + timedelta(seconds=3 + window / 2), "deregister"), SETTINGS) is None


def test_a_sibling_silent_past_the_window_does_not_keep_the_id() -> None:
    window = SETTINGS.heartbeat_interval * SETTINGS.heartbeat_misses
    rec = fold_control(None, register().model_copy(update={"replica": "killed"}), SETTINGS)
    rec = fold_control(rec, beat("a", T0), SETTINGS)
    later = T0 + timedelta(seconds=window + 1)
    rec = fold_control(rec, beat("a", later), SETTINGS)
    assert rec is not None and set(rec["replicas"]) == {"a"}, "the silent replica is forgotten"
    assert fold_control(rec, beat("a", later, "deregister"), SETTINGS) is None


def test_a_deregister_naming_no_replica_removes_the_id_whatever_replicas_remain() -> None:
    rec = fold_control(None, register().model_copy(update={"replica": "a"}), SETTINGS)
    rec = fold_control(rec, beat("b", T0), SETTINGS)
    assert fold_control(rec, beat(None, T0, "deregister"), SETTINGS) is None


def test_records_stored_before_replicas_existed_still_fold() -> None:
    rec = fold_control(None, register(), SETTINGS)
    assert rec is not None
    del rec["replicas"]
    rec = fold_control(rec, beat("a", T0), SETTINGS)
    assert rec is not None and set(rec["replicas"]) == {"a"}
    assert fold_control(rec, beat("a", T0, "deregister"), SETTINGS) is None
