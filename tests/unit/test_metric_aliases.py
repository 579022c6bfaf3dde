"""The deprecated metric names (METRICS_V1_ALIASES) read the same values as their replacements."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import REGISTRY, CollectorRegistry

import core.metrics as m
import frame_buffer_sdk.metrics as sdk
from core.counters import FrameCounters
from core.deadletter import count_letter
from core.settings import Settings
from frame_buffer_sdk.metric_aliases import register

README = Path(__file__).resolve().parents[2] / "README.md"
ALL_ALIASES = (*m.V1_ALIASES, *sdk.V1_ALIASES)


@pytest.fixture(autouse=True)
def aliases() -> None:
    m.register_v1_aliases()


def value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def _id() -> str:
    return uuid.uuid4().hex[:8]


# Each alias's check; test_every_alias_is_checked holds this table to V1_ALIASES.
def check_queue_depth() -> None:
    pid = _id()
    m.QUEUE_DEPTH.labels(pid).set(7)
    assert (
        value("frame_buffer_queue_depth", processor_id=pid)
        == value("frame_buffer_queue_depth_frames", processor_id=pid)
        == 7
    )
    m.QUEUE_DEPTH.remove(pid)  # as the leader-only gauges are cleared: the alias's series goes too
    assert value("frame_buffer_queue_depth", processor_id=pid) is None


def check_router_lag() -> None:
    part = _id()
    m.ROUTER_LAG.labels(part).set(11)
    assert (
        value("frame_buffer_router_lag", partition=part)
        == value("frame_buffer_router_lag_frames", partition=part)
        == 11
    )


def check_stream_backlog() -> None:
    m.STREAM_BACKLOG.set(42)
    assert value("frame_buffer_stream_backlog") == value("frame_buffer_stream_backlog_entries") == 42


def check_stream_pending() -> None:
    m.STREAM_PENDING.set(5)
    assert value("frame_buffer_stream_pending") == value("frame_buffer_stream_pending_entries") == 5


def check_stream_trimmed_unread() -> None:
    m.STREAM_TRIMMED_UNREAD.inc(3)
    new = value("frame_buffer_stream_trimmed_unread_entries_total")
    assert new is not None and new >= 3
    assert value("frame_buffer_stream_trimmed_unread_total") == new


def check_capture_fps() -> None:
    m.CAPTURE_FPS.labels("decoded").set(12.5)
    assert value("frame_buffer_capture_fps", stage="decoded") == 12.5
    assert value("frame_buffer_capture_frames_per_second", stage="decoded") == 12.5


def check_capture_connected() -> None:
    m.CAPTURE_CONNECTED.set(3)
    assert value("frame_buffer_capture_connected") == value("frame_buffer_capture_connected_cameras") == 3


def _worker_letters(reason: str) -> float | None:
    return value("frame_buffer_dead_lettered_total", reason=reason, service="worker", processor_id="")


def check_frames_dropped() -> None:
    orch: Any = SimpleNamespace(counters=FrameCounters())
    reason = f"no_capable_{_id()}"
    for _ in range(2):
        count_letter(orch, reason)
    assert value("frame_buffer_frames_dropped_total", reason=reason) == _worker_letters(reason) == 2
    # A control event the worker dead-letters is no frame: v1 never counted it as dropped.
    event = f"invalid_control_{_id()}"
    m.DEAD_LETTERED.labels(event, "worker", "").inc()
    assert _worker_letters(event) == 1 and value("frame_buffer_frames_dropped_total", reason=event) is None


def check_frames_shed() -> None:
    orch: Any = SimpleNamespace(counters=FrameCounters())
    reason = f"shed_{_id()}"
    for _ in range(3):
        count_letter(orch, reason, shed=True)
    count_letter(orch, "no_capable_processor")
    assert value("frame_buffer_frames_shed_total", reason=reason) == _worker_letters(reason) == 3
    assert value("frame_buffer_frames_shed_total", reason="no_capable_processor") is None
    # v1 counted a shed frame as dropped too.
    assert value("frame_buffer_frames_dropped_total", reason=reason) == 3


def _bridge_letters() -> float:
    return sum(
        s.value
        for family in REGISTRY.collect()
        if family.name == "frame_buffer_dead_lettered"
        for s in family.samples
        if s.name.endswith("_total") and s.labels["service"] == "bridge"
    )


def check_bridge_frames() -> None:
    m.BRIDGE_MIRRORED.inc(5)
    m.DEAD_LETTERED.labels(f"invalid_entry_{_id()}", "bridge", "").inc(2)
    mirrored = value("frame_buffer_bridge_frames_mirrored_total")
    assert mirrored is not None and mirrored >= 5
    assert value("frame_buffer_bridge_frames_total", outcome="mirrored") == mirrored
    assert _bridge_letters() >= 2
    assert value("frame_buffer_bridge_frames_total", outcome="dead_lettered") == _bridge_letters()


def check_frames_processed() -> None:
    pid = _id()
    sdk.FRAMES_PROCESSED_OK.labels(pid).inc(4)
    sdk.DEAD_LETTERED.labels("processing_failed", "processor", pid).inc()
    sdk.DEAD_LETTERED.labels("pixels_missing", "processor", pid).inc(2)
    assert value("frame_buffer_frames_processed_total", processor_id=pid, outcome="ok") == 4
    assert value("frame_buffer_frames_processed_ok_total", processor_id=pid) == 4
    for reason, count in (("processing_failed", 1), ("pixels_missing", 2)):
        lettered = value("frame_buffer_dead_lettered_total", reason=reason, service="processor", processor_id=pid)
        assert value("frame_buffer_frames_processed_total", processor_id=pid, outcome=reason) == lettered == count


CHECKS = {
    "frame_buffer_queue_depth": check_queue_depth,
    "frame_buffer_router_lag": check_router_lag,
    "frame_buffer_stream_backlog": check_stream_backlog,
    "frame_buffer_stream_pending": check_stream_pending,
    "frame_buffer_stream_trimmed_unread": check_stream_trimmed_unread,
    "frame_buffer_capture_fps": check_capture_fps,
    "frame_buffer_capture_connected": check_capture_connected,
    "frame_buffer_frames_dropped": check_frames_dropped,
    "frame_buffer_frames_shed": check_frames_shed,
    "frame_buffer_bridge_frames": check_bridge_frames,
    "frame_buffer_frames_processed": check_frames_processed,
}


def test_every_alias_is_checked() -> None:
    assert sorted(a.name for a in ALL_ALIASES) == sorted(CHECKS)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_alias_exposes_the_value_of_its_replacement(name: str) -> None:
    CHECKS[name]()


def test_no_alias_names_a_declared_metric_and_registering_again_is_a_no_op() -> None:
    registry = CollectorRegistry()
    first = register(m.V1_ALIASES, registry)
    assert register(m.V1_ALIASES, registry) is first
    declared = {
        v._name for mod in (m, sdk) for v in vars(mod).values() if hasattr(v, "_name") and hasattr(v, "_labelnames")
    }
    assert not {a.name for a in ALL_ALIASES} & declared


def test_the_readme_lists_each_alias_with_its_replacement() -> None:
    text = README.read_text(encoding="utf-8")
    for alias in ALL_ALIASES:
        assert f"| `{alias.exposed}` | {alias.replacement} |" in text, alias.name
        for replacement in re.findall(r"`(frame_buffer_[a-z_]+)", alias.replacement):
            assert replacement in text


def test_the_setting_is_on_by_default_and_can_be_turned_off() -> None:
    assert Settings.model_fields["metrics_v1_aliases"].default is True
    assert Settings.model_validate({"metrics_v1_aliases": "false"}).metrics_v1_aliases is False
