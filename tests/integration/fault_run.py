"""One fault case on real processes, counted exactly.

Two workers, four processor replicas registered over REST (two of ``det``, ``face``, the
stateful ``track``), 1,600 frames of 16 cameras sent at 100 frames/s. A fault is injected
once results flow, while frames still come; then every (frame, capability) must be processed
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
from redis.exceptions import ConnectionError as RedisConnectionError

from core.settings import Settings
from devtools.processes import ChildProcess
from frame_buffer_sdk.models import FrameEvent
from frame_buffer_sdk.pipeline import PipelineConfig
from tests.integration.cluster import (
    Cluster,
    http_json,
    pixels_of,
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
SEND_RATE = 100  # frames/s
SEND_CHUNK = 20
READ_ROUND_SECONDS = 20.0
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
    workers: list[tuple[ChildProcess, str]]
    procs: dict[str, list[ChildProcess]]
    bridge: ChildProcess | None = None
    leader: int = -1
    frozen: int = -1  # the worker a fault froze, for its recovery
    leads_before: int = 0
    sent: int = 0  # frames written so far

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


def start_processors(cluster: Cluster, base_url: str) -> dict[str, list[ChildProcess]]:
    procs: dict[str, list[ChildProcess]] = {}
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


async def start_pipeline(
    cluster: Cluster, *, bridge: bool = False, rest_to: Callable[[int], int] | None = None
) -> Pipeline:
    """Two workers, then the processors, registering with and heartbeating to worker
    ``rest_to(leader)`` (the first by default)."""
    w1, url1 = cluster.worker("worker-1")
    w2, url2 = cluster.worker("worker-2")
    await asyncio.gather(wait_ready(url1, proc=w1), wait_ready(url2, proc=w2))
    pipeline = Pipeline(cluster, [(w1, url1), (w2, url2)], {})
    pipeline.leader = await leader_index(pipeline)
    rest_url = pipeline.workers[rest_to(pipeline.leader) if rest_to else 0][1]
    pipeline.procs = start_processors(cluster, rest_url)
    await wait_until(lambda: registered(url2), 60, what="3 processors registered over REST")
    if bridge:
        pipeline.bridge = cluster.spawn("bridge", [sys.executable, "-m", "app.cli", "bridge"])
    return pipeline


async def leader_index(pipeline: Pipeline, within: float = 60) -> int:
    """Which worker leads, from the line each logs on taking and on leaving the lead
    (agents/watch_health.py); the same answer twice in a row, a second apart."""
    answers: list[int | None] = []

    def leads(proc: ChildProcess) -> bool:
        lines = [
            line
            for line in proc.log_path.read_text(errors="replace").splitlines()
            if "leader: sampling lag and judging health" in line or "no longer leader" in line
        ]
        return bool(lines) and "no longer leader" not in lines[-1]

    def find() -> bool:
        leaders = [n for n, (proc, _) in enumerate(pipeline.workers) if proc.alive() and leads(proc)]
        answers.append(leaders[0] if len(leaders) == 1 else None)
        return len(answers) > 1 and answers[-1] is not None and answers[-1] == answers[-2]

    try:
        await wait_until(find, within, interval=1.0, what="exactly one leader")
    except TimeoutError as exc:
        raise AssertionError(f"no single leader: {answers[-5:]}\n{pipeline.cluster.logs()}") from exc
    leader = answers[-1]
    assert leader is not None
    return leader


async def send_frames(pipeline: Pipeline, frames: list[FrameEvent]) -> None:
    """Into Kafka, or into the capture stream when a bridge runs, with their pixels, as a capture
    service writes them."""
    settings = pipeline.settings
    if pipeline.bridge is None:
        await produce_frames(settings, frames)
        pipeline.sent += len(frames)
        return
    redis = aioredis.Redis.from_url(settings.redis_url)
    try:
        while True:
            try:
                async with redis.pipeline(transaction=True) as pipe:
                    for f in frames:
                        if f.frame_key:
                            pipe.set(f.frame_key, pixels_of(f), ex=600)
                        pipe.xadd(settings.capture_stream, {"payload": f.model_dump_json()})
                    await pipe.execute()
                pipeline.sent += len(frames)
                return
            except (RedisConnectionError, OSError):
                # Redis is restarting: a capture service keeps its frames until it is back.
                await asyncio.sleep(0.2)
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
    cluster: Cluster,
    fault: Fault,
    recover: Fault | None = None,
    *,
    bridge: bool = False,
    rest_to: Callable[[int], int] | None = None,
    captured_only: bool = False,
    seed: int = 7,
    count: int = FRAMES,
    settle: float = 150,
) -> tuple[Pipeline, Outcome]:
    """Frames sent at SEND_RATE; ``fault`` once results flow, then ``recover`` (if any).

    ``captured_only``: the outcome accounts for the frames that reached the captured topic,
    for a fault that may lose frames before they are captured (a Redis without persistence)."""
    pipeline = await start_pipeline(cluster, bridge=bridge, rest_to=rest_to)
    settings = cluster.settings
    frames = make_frames(seed=seed, prefix=settings.app_id, count=count)
    if not bridge:
        await store_pixels(settings, frames)
    sending = asyncio.create_task(send_paced(pipeline, frames))
    try:
        # The fault comes mid-stream: once results are flowing, while frames are still coming.
        await wait_until(
            lambda: read_topic(
                settings, settings.results_topic, idle_seconds=0.5, max_seconds=2, until=lambda v: len(v) >= 100
            ),
            90,
            what="results flowing",
        )
        assert not sending.done(), "every frame was sent before the fault: nothing was in flight"
        await fault(pipeline)
        if recover is not None:
            await recover(pipeline)
        await sending
    finally:
        sending.cancel()
    if captured_only:
        frames = await captured_frames(pipeline, frames)
    outcome = await collect(pipeline, frames, settle)
    return pipeline, outcome


async def send_paced(pipeline: Pipeline, frames: list[FrameEvent]) -> None:
    """About 100 frames/s, so that a fault lands while records are routed and not yet committed."""
    for start in range(0, len(frames), SEND_CHUNK):
        await send_frames(pipeline, frames[start : start + SEND_CHUNK])
        await asyncio.sleep(SEND_CHUNK / SEND_RATE)


async def captured_frames(pipeline: Pipeline, frames: list[FrameEvent]) -> list[FrameEvent]:
    """The frames on the captured topic, once the bridge has mirrored all it will (idle 5 s)."""
    records = await read_topic(pipeline.settings, pipeline.settings.captured_topic, idle_seconds=5, max_seconds=90)
    ids = {f["frame_id"] for r in records for f in (r if isinstance(r, list) else [r])}
    return [f for f in frames if f.frame_id in ids]


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
        # A round at most READ_ROUND_SECONDS, then a fresh read from the start: on Tansu a reader at
        # the head can be moved past a batch for good (README, "Tansu, as the code meets it").
        results = await read_topic(
            settings,
            settings.results_topic,
            idle_seconds=10,
            max_seconds=min(READ_ROUND_SECONDS, deadline - time.monotonic()),
            until=accounted,
        )
        if accounted(results):
            break
    # Repeats still in flight land within the idle time; then the topics are read whole.
    await asyncio.sleep(3)
    seen = len(results)
    whole: list[dict[str, Any]] = []
    for idle in (3.0, 10.0, 20.0):
        # On a loaded machine a fetch from the start can pause past the idle time and end the
        # read early: a re-read must find at least what the loop above saw.
        whole = await read_topic(settings, settings.results_topic, idle_seconds=idle, max_seconds=90)
        if len(whole) >= seen:
            break
    assert len(whole) >= seen, f"the results topic read whole gave {len(whole)} records, fewer than the {seen} seen"
    results = whole
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
    # Never got there: what each worker boot last published, to tell which counts are missing.
    for url in pipeline.live_urls():
        _, boots = await http_json("GET", f"{url}/table/worker_stats/", within=10)
        stats["boots"] = {
            boot: {
                name: {k: snap.get(k) for k in ("covered", "captured", "routed", "processed")}
                for name, snap in (v.get("sources") or {}).items()
                if isinstance(snap, dict)
            }
            for boot, v in (boots if isinstance(boots, dict) else {}).items()
            if isinstance(v, dict)
        }
        break
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
    unoffered = [d for d in outcome.letters if d["reason"] == "no_capable_processor"]
    lettered = Counter(d["frame_id"] for d in unoffered)
    wrongly = [(d["frame_id"], d["capability"], d["detail"]) for d in unoffered if d["frame_id"] not in unroutable]
    assert not wrongly, f"{len(wrongly)} letters for capabilities on offer, e.g. {wrongly[:3]}\n{cluster.logs()}"
    assert set(lettered) == unroutable, f"unroutable frames never dead-lettered: {unroutable - set(lettered)}"
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


def assert_stats_balance(outcome: Outcome, remirrored: bool = False) -> None:
    """captured = processed + shed + dead-lettered, from /api/v1/frames/stats, exactly.

    ``captured`` counts frames and the other side (frame, capability) pairs, so a frame asking
    for two capabilities counts twice on the right. Results published twice in the SDK's window
    are counted twice as processed. The counters count each record of a partition once, whoever
    owns it (README, "Frame statistics"), so rebalances, killed and frozen workers change nothing.
    Only entries the bridge ``remirrored`` after a Redis restart are new records, counted again
    (both sides may then count more, never less).
    """
    stats = outcome.stats
    frames = outcome.frames
    captured_pairs = sum(len(f.capabilities) for f in frames)
    repeats = sum(n - 1 for n in outcome.got.values())
    extra_frames = stats["captured"] - len(frames)
    extra_pairs = stats_out(stats) - captured_pairs - repeats
    shown = (
        f"captured {stats['captured']} of {len(frames)} frames, processed + shed + dead-lettered"
        f" {stats_out(stats)} of {captured_pairs} pairs (+{repeats} results repeated)"
    )
    if remirrored:
        assert extra_frames >= 0 and extra_pairs >= 0, f"{shown}: counts missing: {stats}"
    else:
        assert extra_frames == 0 and extra_pairs == 0, f"{shown}: {stats}"


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
