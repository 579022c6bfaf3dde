from __future__ import annotations

from datetime import UTC, datetime

from agents.worker_timers import build_views
from core.levels import Level
from frame_buffer_sdk.models import ProcessorStatus


def record(pid: str, status: ProcessorStatus = ProcessorStatus.HEALTHY) -> dict[str, object]:
    now = datetime.now(UTC).isoformat()
    return {
        "id": pid,
        "capabilities": ["x"],
        "capacity": 10,
        "stateful": False,
        "partitions": 1,
        "metadata": {},
        "topic": f"frames.ready.{pid}",
        "consumer_group": f"processor.{pid}",
        "status": status.value,
        "last_heartbeat": now,
        "registered_at": now,
    }


def test_views_carry_load_and_level_from_the_latest_report() -> None:
    views = build_views({"a": record("a")}, {"a": {"lag": 7, "level": "HIGH", "status": "healthy", "sampled_at": 1.5}})
    assert [(v.id, v.lag, v.level, v.healthy, v.sampled_at) for v in views] == [("a", 7, Level.HIGH, True, 1.5)]


def test_the_leaders_latest_report_heals_a_stale_registry_copy() -> None:
    stale = {"a": record("a", ProcessorStatus.UNHEALTHY), "b": record("b")}
    reports = {"a": {"status": "healthy"}, "b": {"status": "unhealthy"}}
    assert {v.id: v.healthy for v in build_views(stale, reports)} == {"a": True, "b": False}


def test_without_a_report_the_registry_decides_and_draining_always_wins() -> None:
    views = build_views(
        {"a": record("a", ProcessorStatus.UNHEALTHY), "b": record("b", ProcessorStatus.DRAINING), "c": record("c")},
        {"b": {"status": "healthy"}},
    )
    assert {v.id: v.healthy for v in views} == {"a": False, "b": False, "c": True}
