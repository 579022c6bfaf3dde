"""Counts keyed by free-form camera ids stay bounded: memory, Prometheus series, stats snapshot."""

from __future__ import annotations

import json

from core.counters import MAX_CAMERAS, OTHER_CAMERAS, BoundedCounter, FrameCounters, sum_snapshots
from core.metrics import FRAMES_ROUTED


def test_shed_counts_keep_max_cameras_keys_and_lose_no_count() -> None:
    counters = FrameCounters()
    for n in range(100_000):
        counters.shed_by_camera[f"cam-{n}-{'x' * 200}"] += 1
    snapshot = counters.snapshot()
    assert len(snapshot["shed_by_camera"]) == MAX_CAMERAS + 1
    assert sum(snapshot["shed_by_camera"].values()) == 100_000
    assert snapshot["shed_by_camera"][OTHER_CAMERAS] == 100_000 - MAX_CAMERAS
    assert len(json.dumps(snapshot)) < 100_000, "a snapshot far below the 1 MB record limit"


def test_known_cameras_keep_counting_under_their_own_name() -> None:
    counts = BoundedCounter(limit=2)
    for camera in ("a", "b", "c", "a", "d", "b"):
        counts[camera] += 1
    assert counts == {"a": 2, "b": 2, OTHER_CAMERAS: 2}
    counts.update({"a": 3, "e": 4})
    assert counts == {"a": 5, "b": 2, OTHER_CAMERAS: 6}


def test_totals_over_many_worker_boots_stay_bounded() -> None:
    snaps = []
    for boot in range(10):
        c = FrameCounters()
        for n in range(MAX_CAMERAS):
            c.shed_by_camera[f"boot{boot}-cam{n}"] += 1
        snaps.append(c.snapshot())
    total = sum_snapshots(snaps)["shed_by_camera"]
    assert len(total) == MAX_CAMERAS + 1
    assert sum(total.values()) == 10 * MAX_CAMERAS


def test_no_metric_is_labelled_by_camera() -> None:
    from prometheus_client.metrics import MetricWrapperBase

    import core.metrics
    import frame_buffer_sdk.metrics

    modules = (core.metrics, frame_buffer_sdk.metrics)
    metrics = [m for mod in modules for m in vars(mod).values() if isinstance(m, MetricWrapperBase)]
    assert FRAMES_ROUTED in metrics
    assert [m._name for m in metrics if "camera_id" in m._labelnames] == []
