"""One fault case on real processes, counted exactly.

Two workers, four processor replicas registered over REST (two of ``det``, ``face``, the
stateful ``track``), 1,600 frames of 16 cameras. The first half is sent, a fault is injected
once results flow, the second half is sent; then every (frame, capability) must be processed
or dead-lettered with a reason, never missing, duplicates only inside the windows the README
names, ``tracking`` results in each camera's sequence order, and the stats must balance.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from core.settings import Settings
from frame_buffer_sdk.models import FrameEvent
from frame_buffer_sdk.pipeline import PipelineConfig
from tests.integration.cluster import (
    Cluster,
    Proc,
    http_json,
    produce_frames,
    read_topic,
    small_frame,
    store_pixels,
    wait_ready,
    wait_until,
)

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
STATEFUL = "tracking"
# The sample processors' batch size.
MAX_BATCH = next(f.default for f in dataclasses.fields(PipelineConfig) if f.name == "max_batch")
OWNER = {cap: pid for pid, (cap, _, _) in PROCESSORS.items()}


def fault_settings(make_settings: Callable[..., Settings], **overrides: Any) -> Settings:
    """Short timeouts, so that a fault outlasts every session and heartbeat deadline quickly."""
    values: dict[str, Any] = {
        "heartbeat_interval": 2.0,
        "heartbeat_misses": 3,
        "stall_timeout": 20.0,
        "lag_sample_interval": 0.5,
        "processor_partitions": 4,
        "log_level": "info",
        **overrides,
    }
    return make_settings(**values)


def make_frames(seed: int, prefix: str, count: int = FRAMES) -> list[FrameEvent]:
    rng = random.Random(seed)
    return [
        small_frame(
            f"f{seed}-{i:05d}",
            f"cam-{i % CAMERAS:02d}",
            i // CAMERAS,
            f"{prefix}:px:{i}",
            rng.choice(CAPABILITY_MIX),
        )
        for i in range(count)
    ]


@dataclass
class Pipeline:
    """The running processes of one case."""

    cluster: Cluster
    workers: list[tuple[Proc, str]]
    procs: dict[str, list[Proc]]
    bridge: Proc | None = None

    @property
    def settings(self) -> Settings:
        return self.cluster.settings

    def live_urls(self) -> list[str]:
        return [url for proc, url in self.workers if proc.alive()]


@dataclass
class Outcome:
    frames: list[FrameEvent]
    results: list[dict[str, Any]]
    letters: list[dict[str, Any]]
    stats: dict[str, Any]
    got: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def duplicates(self) -> dict[tuple[str, str], int]:
        return {pair: n for pair, n in self.got.items() if n > 1}


Fault = Callable[[Pipeline], Awaitable[None]]


def start_processors(cluster: Cluster, base_url: str) -> dict[str, list[Proc]]:
    procs: dict[str, list[Proc]] = {}
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


async def start_pipeline(cluster: Cluster, *, bridge: bool = False) -> Pipeline:
    w1, url1 = cluster.worker("worker-1")
    w2, url2 = cluster.worker("worker-2")
    await asyncio.gather(wait_ready(url1, proc=w1), wait_ready(url2, proc=w2))
    procs = start_processors(cluster, url1)
    await wait_until(lambda: registered(url2), 60, what="3 processors registered over REST")
    bridge_proc = cluster.spawn("bridge", [sys.executable, "-m", "bridge"]) if bridge else None
    return Pipeline(cluster, [(w1, url1), (w2, url2)], procs, bridge_proc)


async def leader_index(pipeline: Pipeline, within: float = 30) -> int:
    """Which worker leads: only the leader sets the processor health gauges (agents/watch_health.py)."""

    async def find() -> int | None:
        leaders = []
        for n, (proc, url) in enumerate(pipeline.workers):
            if not proc.alive():
                continue
            async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as resp:
                if "frame_buffer_processor_healthy{" in await resp.text():
                    leaders.append(n)
        return leaders[0] if len(leaders) == 1 else None

    found: int = await wait_until(lambda: find(), within, interval=0.5, what="exactly one leader")
    return found


async def send_frames(pipeline: Pipeline, frames: list[FrameEvent]) -> None:
    """Into Kafka, or into the capture stream when a bridge runs (as a capture service writes them)."""
    settings = pipeline.settings
    if pipeline.bridge is None:
        await produce_frames(settings, frames)
        return
    redis = aioredis.Redis.from_url(settings.redis_url)
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for f in frames:
                pipe.xadd(settings.capture_stream, {"payload": f.model_dump_json()})
            await pipe.execute()
    finally:
        await redis.aclose()


async def frame_stats(url: str) -> dict[str, Any]:
    status, stats = await http_json("GET", f"{url}/api/v1/frames/stats", within=10)
    assert status == 200, stats
    return dict(stats)


def stats_out(stats: dict[str, Any]) -> int:
    """processed + shed + dead-lettered, in (frame, capability) pairs, by whoever wrote the letter."""
    return int(
        stats["processed"]
        + stats["shed"]
        + sum(stats["dead_lettered"].values())
        + sum(stats["processor_dead_lettered"].values())
    )


async def run_with_fault(
    cluster: Cluster, fault: Fault, *, bridge: bool = False, seed: int = 7, settle: float = 150
) -> tuple[Pipeline, Outcome]:
    pipeline = await start_pipeline(cluster, bridge=bridge)
    settings = cluster.settings
    frames = make_frames(seed=seed, prefix=settings.app_id)
    await store_pixels(settings, frames)
    half = len(frames) // 2
    await send_frames(pipeline, frames[:half])

    # The fault comes mid-stream: once results are flowing, while the second half is still to come.
    await wait_until(
        lambda: read_topic(
            settings, settings.results_topic, idle_seconds=0.5, max_seconds=2, until=lambda v: len(v) >= 100
        ),
        90,
        what="results flowing",
    )
    await fault(pipeline)
    await send_frames(pipeline, frames[half:])
    outcome = await collect(pipeline, frames, settle)
    return pipeline, outcome


async def collect(pipeline: Pipeline, frames: list[FrameEvent], settle: float) -> Outcome:
    settings = pipeline.settings
    pairs, _ = expected_pairs(frames)
    letters: list[dict[str, Any]] = []

    def accounted(values: list[Any]) -> bool:
        return {(r["frame_id"], r["capability"]) for r in values} | lettered_pairs(letters) >= pairs

    deadline = time.monotonic() + settle
    results: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        letters = await read_topic(settings, settings.dead_letter_topic, idle_seconds=1, max_seconds=10)
        results = await read_topic(
            settings, settings.results_topic, idle_seconds=10, max_seconds=deadline - time.monotonic(), until=accounted
        )
        if accounted(results):
            break
    # Repeats still in flight land within the idle time; then the topics are read whole.
    await asyncio.sleep(3)
    results = await read_topic(settings, settings.results_topic, idle_seconds=3, max_seconds=60)
    letters = await read_topic(settings, settings.dead_letter_topic, idle_seconds=2, max_seconds=30)
    stats = await settled_stats(pipeline, frames, results, letters)
    outcome = Outcome(frames, results, letters, stats)
    outcome.got = Counter((r["frame_id"], r["capability"]) for r in results)
    return outcome


async def settled_stats(
    pipeline: Pipeline, frames: list[FrameEvent], results: list[Any], letters: list[Any], within: float = 30
) -> dict[str, Any]:
    """The stats once every result and letter on the topics is counted (each worker publishes
    its counters every second); the last answer if they never get there."""
    counted = len(results) + sum(1 for d in letters if d.get("source") == "processor")
    deadline = time.monotonic() + within
    stats: dict[str, Any] = {}
    while time.monotonic() < deadline:
        for url in pipeline.live_urls():
            try:
                stats = await frame_stats(url)
            except (aiohttp.ClientError, TimeoutError, OSError):
                continue
            if stats["processed"] + sum(stats["processor_dead_lettered"].values()) >= counted:
                await asyncio.sleep(2)  # and one more publication, so nothing is half counted
                return await frame_stats(url)
        await asyncio.sleep(1)
    return stats


def expected_pairs(frames: list[FrameEvent]) -> tuple[set[tuple[str, str]], set[str]]:
    pairs = {(f.frame_id, cap) for f in frames for cap in f.capabilities if cap in OWNER}
    unroutable = {f.frame_id for f in frames if any(cap not in OWNER for cap in f.capabilities)}
    return pairs, unroutable


def lettered_pairs(letters: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(d["frame_id"], d["capability"]) for d in letters if d.get("frame_id") and d.get("reason")}


def assert_accounted(
    outcome: Outcome,
    cluster: Cluster,
    allowed_letters: frozenset[str] = frozenset({"no_capable_processor"}),
    once_lettered: bool = False,
) -> None:
    """Every valid pair processed or dead-lettered with a reason; nothing else.

    ``once_lettered``: no letter twice. A worker replaying its uncommitted records after a
    crash or a rebalance may dead-letter a frame again (the dead-letter topic is at-least-once).
    """
    pairs, unroutable = expected_pairs(outcome.frames)
    missing = pairs - set(outcome.got) - lettered_pairs(outcome.letters)
    assert not missing, (
        f"{len(missing)} frame/capability pairs neither processed nor dead-lettered, e.g. {sorted(missing)[:5]}\n"
        f"stats: {outcome.stats}\n{cluster.logs()}"
    )
    assert set(outcome.got) <= pairs, "results for pairs nobody asked for"
    for r in outcome.results:
        assert PROCESSORS[r["processor_id"]][0] == r["capability"], f"processed by the wrong processor: {r}"
    reasons = Counter(d["reason"] for d in outcome.letters)
    assert set(reasons) <= allowed_letters, reasons
    lettered = Counter(d["frame_id"] for d in outcome.letters if d["reason"] == "no_capable_processor")
    assert set(lettered) == unroutable
    if once_lettered:
        assert all(n == 1 for n in lettered.values()), {f: n for f, n in lettered.items() if n > 1}


def assert_no_duplicates(outcome: Outcome) -> None:
    dups = outcome.duplicates
    assert not dups, f"{len(dups)} pairs processed more than once, e.g. {list(dups.items())[:5]}"


def assert_one_batch_repeated_at_most(outcome: Outcome, capability: str, replicas: int = 1) -> None:
    """The SDK's one window (README, "Once, in effect"): a replica killed after the broker appended
    its batch's results and before its done markers were written; its successor publishes that
    batch again. At most one batch per such replica, of its capability only."""
    dups = outcome.duplicates
    assert all(n == 2 for n in dups.values()), dups
    assert {cap for _, cap in dups} <= {capability}, dups
    assert len(dups) <= MAX_BATCH * replicas, f"{len(dups)} pairs processed twice: more than {replicas} batch(es)"


def assert_stats_balance(outcome: Outcome) -> None:
    """captured = processed + shed + dead-lettered, from /api/v1/frames/stats.

    ``captured`` counts frames and the other side (frame, capability) pairs, so a frame asking
    for two capabilities counts twice on the right. Results published twice in the SDK's window
    are counted twice as processed: that is the one slack allowed.
    """
    stats = outcome.stats
    frames = outcome.frames
    captured_pairs = sum(len(f.capabilities) for f in frames)
    repeats = sum(n - 1 for n in outcome.got.values())
    assert stats["captured"] == len(frames), f"captured {stats['captured']} of {len(frames)} frames: {stats}"
    assert stats_out(stats) == captured_pairs + repeats, (
        f"processed + shed + dead-lettered = {stats_out(stats)}, captured pairs {captured_pairs}"
        f" (+{repeats} results repeated): {stats}"
    )


def assert_camera_order(outcome: Outcome, capability: str = STATEFUL) -> None:
    """A stateful capability's results come in each camera's sequence order (first copies)."""
    sequence = {f.frame_id: f.sequence for f in outcome.frames}
    seen: set[str] = set()
    last: dict[str, int] = {}
    out_of_order: list[tuple[str, int, int]] = []
    for r in outcome.results:
        if r["capability"] != capability or r["frame_id"] in seen:
            continue
        seen.add(r["frame_id"])
        seq = sequence[r["frame_id"]]
        assert seq is not None
        camera = r["camera_id"]
        if camera in last and seq < last[camera]:
            out_of_order.append((camera, last[camera], seq))
        last[camera] = max(seq, last.get(camera, -1))
    assert not out_of_order, f"{len(out_of_order)} {capability} results out of camera order, e.g. {out_of_order[:5]}"
