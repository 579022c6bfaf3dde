"""The orchestrator on real servers under SIGKILL: 2 workers, 3 processors registered over REST.

Every valid frame must be processed exactly once per capability it needs, by a processor
with that capability, or be dead-lettered with a reason. Counted exactly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from frame_buffer_sdk.models import FrameEvent
from frame_buffer_sdk.pipeline import PipelineConfig
from tests.integration.cluster import (
    Cluster,
    http_json,
    produce_frames,
    read_topic,
    small_frame,
    store_pixels,
    wait_ready,
    wait_until,
)
from tests.integration.fault_run import stats_out

pytestmark = pytest.mark.integration

CAMERAS = 16
FRAMES = 1600
CAPABILITY_MIX: list[list[str]] = [
    ["object_detection"],
    ["object_detection"],
    ["face_recognition"],
    ["object_detection", "face_recognition"],
    ["tracking"],
    ["ocr"],  # nobody offers it: dead-lettered as no_capable_processor
]
PROCESSORS = {
    # id: (capability, stateful, replicas)
    "det": ("object_detection", False, 2),
    "face": ("face_recognition", False, 1),
    "track": ("tracking", True, 1),
}
# The sample processors' batch size.
MAX_BATCH = next(f.default for f in dataclasses.fields(PipelineConfig) if f.name == "max_batch")
OWNER = {cap: pid for pid, (cap, _, _) in PROCESSORS.items()}


def make_frames(seed: int, prefix: str) -> list[FrameEvent]:
    rng = random.Random(seed)
    return [
        small_frame(
            f"f{seed}-{i:05d}",
            f"cam-{i % CAMERAS:02d}",
            i // CAMERAS,
            f"{prefix}:px:{i}",
            rng.choice(CAPABILITY_MIX),
        )
        for i in range(FRAMES)
    ]


@pytest.fixture
def cluster(make_settings: Any, tmp_path: Path) -> Iterator[Cluster]:
    settings: Settings = make_settings(
        heartbeat_interval=2.0,
        heartbeat_misses=3,
        stall_timeout=20.0,
        lag_sample_interval=0.5,
        processor_partitions=4,
        log_level="info",
    )
    c = Cluster(settings, tmp_path / "logs")
    yield c
    c.close()


def start_processors(cluster: Cluster, base_url: str) -> dict[str, list[Any]]:
    procs: dict[str, list[Any]] = {}
    for pid, (cap, stateful, replicas) in PROCESSORS.items():
        for n in range(replicas):
            # The brightness sample is the stateful one (motion needs each camera's previous frame).
            kind = "brightness" if stateful else "detector"
            argv = [sys.executable, "-m", "sample_processors", kind, pid, "--capabilities", cap, "--capacity", "5000"]
            if not stateful:
                argv += ["--latency-ms", "1"]
            procs.setdefault(pid, []).append(
                cluster.spawn(f"proc-{pid}-{n}", argv, orchestrator_url=base_url, processor_metrics_port=0)
            )
    return procs


async def registered(base_url: str) -> bool:
    status, body = await http_json("GET", f"{base_url}/api/v1/processors/")
    return status == 200 and {p["id"] for p in body} == set(PROCESSORS)


def expected_pairs(frames: list[FrameEvent]) -> tuple[set[tuple[str, str]], set[str]]:
    pairs = {(f.frame_id, cap) for f in frames for cap in f.capabilities if cap in OWNER}
    unroutable = {f.frame_id for f in frames if any(cap not in OWNER for cap in f.capabilities)}
    return pairs, unroutable


async def run_and_kill(cluster: Cluster, victim: str) -> None:
    settings = cluster.settings
    w1, url1 = cluster.worker("worker-1")
    w2, url2 = cluster.worker("worker-2")
    await asyncio.gather(wait_ready(url1, proc=w1), wait_ready(url2, proc=w2))
    procs = start_processors(cluster, url1)
    await wait_until(lambda: registered(url2), 60, what="3 processors registered over REST")

    frames = make_frames(seed=7, prefix=settings.app_id)
    await store_pixels(settings, frames)
    pairs, unroutable = expected_pairs(frames)
    half = len(frames) // 2
    await produce_frames(settings, frames[:half])

    # Kill mid-stream: once results are flowing, while the second half is still to come.
    await wait_until(
        lambda: read_topic(
            settings, settings.results_topic, idle_seconds=0.5, max_seconds=2, until=lambda v: len(v) >= 100
        ),
        60,
        what="results flowing",
    )
    if victim == "processor":
        procs["det"][0].kill()
    else:
        w2.kill()
    await produce_frames(settings, frames[half:])

    def done(values: list[Any]) -> bool:
        return {(r["frame_id"], r["capability"]) for r in values} >= pairs

    results = await read_topic(settings, settings.results_topic, idle_seconds=20, max_seconds=150, until=done)
    letters = await read_topic(settings, settings.dead_letter_topic, idle_seconds=2, max_seconds=20)

    got = Counter((r["frame_id"], r["capability"]) for r in results)
    missing = pairs - set(got)
    duplicates = {pair: n for pair, n in got.items() if n > 1}
    if missing:
        _, report = await http_json("GET", f"{url1}/api/v1/backpressure")
        _, stats = await http_json("GET", f"{url1}/api/v1/frames/stats")
        lost_letters = [d for d in letters if (d.get("frame_id"), d.get("capability")) in missing]
        pytest.fail(
            f"{len(missing)} frame/capability pairs never processed, e.g. {sorted(missing)[:5]}\n"
            f"dead letters among them: {len(lost_letters)} {Counter(d['reason'] for d in lost_letters)}\n"
            f"backpressure: {report}\nstats: {stats}\n{cluster.logs()}"
        )
    assert set(got) == pairs, "results for pairs nobody asked for"
    if victim == "processor":
        # The one window left (README, "Never lose a frame"): killed after the broker appended
        # a batch's results and before its done markers were written, the replica's successor
        # publishes that batch again. At most one batch of the killed replica's capability.
        killed_cap = PROCESSORS["det"][0]
        assert all(n == 2 for n in duplicates.values()), duplicates
        assert {cap for _, cap in duplicates} <= {killed_cap}, duplicates
        assert len(duplicates) <= MAX_BATCH, f"{len(duplicates)} pairs processed twice: more than one batch"
    else:
        assert not duplicates, f"{len(duplicates)} pairs processed more than once, e.g. {list(duplicates.items())[:5]}"
    for r in results:
        assert PROCESSORS[r["processor_id"]][0] == r["capability"], f"processed by the wrong processor: {r}"
    lettered = Counter(d["frame_id"] for d in letters if d["reason"] == "no_capable_processor")
    assert set(lettered) == unroutable
    if victim == "processor":
        # A worker replaying its uncommitted records after a crash may dead-letter one twice:
        # the dead-letter topic is at-least-once, like every topic here; nothing is missing.
        assert all(n == 1 for n in lettered.values())
    assert all(d["reason"] == "no_capable_processor" for d in letters), Counter(d["reason"] for d in letters)
    await assert_exact_stats(url1, frames, results, got)


async def assert_exact_stats(url: str, frames: list[FrameEvent], results: list[Any], got: Counter[Any]) -> None:
    """captured = processed + shed + dead-lettered, exactly, though a worker died with counts it
    had not yet persisted and its partitions' records and results were replayed by the other."""
    stats: dict[str, Any] = {}
    for _ in range(30):
        _, stats = await http_json("GET", f"{url}/api/v1/frames/stats")
        if stats["processed"] >= len(results) and stats["captured"] >= len(frames):
            break
        await asyncio.sleep(1)
    pairs = sum(len(f.capabilities) for f in frames) + sum(n - 1 for n in got.values())
    assert (stats["captured"], stats_out(stats)) == (len(frames), pairs), stats


async def test_processor_replica_killed_mid_stream_loses_nothing_repeats_one_batch_at_most(
    cluster: Cluster,
) -> None:
    await run_and_kill(cluster, "processor")


async def test_worker_killed_mid_stream_loses_and_repeats_nothing(cluster: Cluster) -> None:
    await run_and_kill(cluster, "worker")
