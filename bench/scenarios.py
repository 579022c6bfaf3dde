"""What is measured on every system, the same way: warm-up, throughput, latency at offered loads.

A system is anything with a load generator feeding its entry point and receivers at its
exit (see ``System``). Every measurement has a tag of its own (bench.frames), so late
frames of one step are never counted in the next.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.procs import LoadGen
from bench.receivers import Recorder
from devtools.processes import ChildProcess
from frame_buffer_sdk.kafka_security import PLAINTEXT, KafkaSecurity

log = logging.getLogger(__name__)

CAPABILITIES = ["detect", "classify", "ocr"]


def processor_id(capability: str) -> str:
    return f"proc-{capability}"


@dataclass
class BenchEnv:
    """Where a system runs: servers, a namespace for its names, and its log directory."""

    kafka_url: str
    redis_url: str
    log_dir: Path
    ns: str
    cameras: int = 32
    capabilities: list[str] = field(default_factory=lambda: list(CAPABILITIES))
    # KAFKA_SECURITY_* of the environment, for the bench's own clients (receivers, producers).
    security: KafkaSecurity = PLAINTEXT

    @property
    def bootstrap(self) -> str:
        return self.kafka_url.removeprefix("kafka://")


class System(abc.ABC):
    """One thing under measurement. Subclasses start services, receivers and a load generator."""

    key: str = ""
    label: str = ""
    # "ours", "limit" (what the hops cost with no logic) or "today" (what users run now)
    role: str = ""
    # Whether one frame can ask for several capabilities (the baselines route by one header).
    fans_out: bool = False

    def __init__(self, env: BenchEnv) -> None:
        self.env = env
        self.recorder = Recorder()
        self.children: list[ChildProcess] = []
        self._loadgen: LoadGen | None = None

    @property
    def loadgen(self) -> LoadGen:
        assert self._loadgen is not None, "start() first"
        return self._loadgen

    @abc.abstractmethod
    async def start(self) -> None:
        """Start services, receivers and the load generator; return when they run (warm_up proves it)."""

    @abc.abstractmethod
    async def stop(self) -> None: ...

    async def start_loadgen(self, sink: str, url: str, target: str) -> None:
        self._loadgen = LoadGen(sink, url, target, self.env.capabilities, self.env.cameras)
        await self._loadgen.start()

    async def stop_loadgen(self) -> None:
        if self._loadgen is not None:
            await self._loadgen.stop()

    def check(self) -> None:
        for child in self.children:
            child.check_alive()

    def stop_children(self) -> None:
        for child in reversed(self.children):
            child.stop(timeout=15.0)

    def peak_rss_mb(self) -> dict[str, float | None]:
        return {child.name: child.peak_rss_mb() for child in self.children}

    async def details(self) -> dict[str, Any]:
        """Anything the system itself can tell about the run (counters); empty by default."""
        return {}


def percentiles_ms(latencies: list[float]) -> dict[str, float | None]:
    if not latencies:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    values = np.asarray(latencies) * 1000.0
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99), "max_ms": float(values.max())}


async def warm_up(system: System, limit: float) -> float:
    """Send small rounds until one arrives whole: every hop, group join and registration is done."""
    started = time.monotonic()
    deadline = started + limit
    attempt = 0
    n = max(system.env.cameras, 3 * len(system.env.capabilities))
    while time.monotonic() < deadline:
        tag = f"warmup{attempt}"
        await system.loadgen.send(tag, 500, n, limit=30)
        remaining = deadline - time.monotonic()
        if await system.recorder.wait_for(tag, n, limit=max(0.5, min(remaining, 10))):
            return time.monotonic() - started
        system.check()
        attempt += 1
    raise RuntimeError(f"{system.key}: no warm-up round arrived whole within {limit:.0f} s")


async def measure_throughput(system: System, count: int, limit: float) -> dict[str, Any]:
    """Blast ``count`` frames flat out; the end-to-end rate is frames received / (last receipt - first send)."""
    tag = "throughput"
    sent = await system.loadgen.send(tag, 0, count, limit=limit)
    complete = await system.recorder.wait_for(tag, count, limit=limit, idle_limit=15)
    stats = system.recorder.stats(tag)
    received = len(stats.latencies)
    seconds = stats.last - float(sent["started"]) if received else 0.0
    return {
        "frames": count,
        "received": received,
        "complete": complete,
        "seconds": seconds,
        "rate": received / seconds if seconds > 0 else 0.0,
        "send_rate": float(sent["rate"]),
        **percentiles_ms(stats.latencies),
    }


# A system delivering less than 85% of the offered rate adds > 0.15 s of backlog per second offered.
# (Not tighter: the slope of a short run of a jittery system has a standard error of a few 0.01.)
MAX_LATENCY_GROWTH = 0.15


def latency_growth(captured: list[float], latencies: list[float]) -> float | None:
    """Slope of latency against capture time (s per s), by least squares.

    Frames are offered at a steady rate, so a system that keeps up has a flat latency; one
    that delivers only a fraction f of the offered rate makes each later frame wait longer,
    with slope 1 - f. The fit, unlike comparing a few frames, is robust to latency jitter.
    """
    if len(latencies) < 10:
        return None
    x = np.asarray(captured) - captured[0]
    if float(np.ptp(x)) <= 0:
        return None
    slope = np.polyfit(x, np.asarray(latencies), 1)[0]
    return float(slope)


async def measure_latency(
    system: System, rate: float, duration: float, drain: float, tag_prefix: str = "load", fanout: bool = False
) -> dict[str, Any]:
    """Offer ``rate`` frames/s for ``duration`` s, then wait up to ``drain`` s for the stragglers.

    ``fanout``: every frame asks for every capability; each (frame, processor) pair is one
    arrival, and the latencies are the pairs'."""
    frames = max(1, round(rate * duration))
    count = frames * (len(system.env.capabilities) if fanout else 1)
    tag = f"{tag_prefix}{round(rate)}"
    sent = await system.loadgen.send(tag, rate, frames, limit=duration * 3 + 30, fanout=fanout)
    await system.recorder.wait_for(tag, count, limit=drain, idle_limit=min(drain, 5))
    stats = system.recorder.stats(tag)
    received = len(stats.latencies)
    window = stats.last - stats.first
    growth = latency_growth(stats.captured, stats.latencies)
    return {
        "offered": rate,
        "fanout": fanout,
        "pairs": count,
        "sent": int(sent["sent"]),
        "send_rate": float(sent["rate"]),
        "received": received,
        # Not received within the drain window: late or lost, either way not delivered in time.
        "missing": count - received,
        # Arrival rate between the first and the last arrival: the rate the system delivered.
        "receive_rate": (received - 1) / window if received > 1 and window > 0 else 0.0,
        "sustained": received == count and (growth is None or growth <= MAX_LATENCY_GROWTH),
        "latency_growth": growth,
        **percentiles_ms(stats.latencies),
    }


@dataclass
class Plan:
    """What to measure on one system; a profile makes one per system."""

    throughput_frames: int
    throughput_timeout: float
    loads: list[float]
    load_seconds: float
    drain_seconds: float
    warmup_timeout: float
    sustain_check: bool = False
    # Offered loads at which every frame asks for every capability (issue 9's end-to-end case:
    # 3 processors, fan-out, about 400 frames/s). Only systems that fan out run them.
    fanout_loads: list[float] = field(default_factory=list)


async def run_system(system: System, plan: Plan) -> dict[str, Any]:
    """Every measurement of one system; an error ends it, is reported, and never becomes a number."""
    result: dict[str, Any] = {"key": system.key, "label": system.label, "role": system.role, "ok": False}
    t0 = time.monotonic()
    try:
        await system.start()
        result["warmup_seconds"] = await warm_up(system, plan.warmup_timeout)
        if plan.throughput_frames:
            result["throughput"] = await measure_throughput(system, plan.throughput_frames, plan.throughput_timeout)
            system.check()
            if plan.sustain_check and result["throughput"]["rate"] > 0:
                probe = round(0.9 * result["throughput"]["rate"], -1)
                check = await measure_latency(system, probe, plan.load_seconds, plan.drain_seconds, "sustain")
                result["sustain_check"] = check
        if system.fans_out and plan.fanout_loads:
            # Before the paced loads: a load that was not sustained would leave its backlog here.
            result["fanout"] = []
            for rate in plan.fanout_loads:
                row = await measure_latency(system, rate, plan.load_seconds, plan.drain_seconds, "fanout", fanout=True)
                result["fanout"].append(row)
                system.check()
        result["latency"] = []
        saturated_at: float | None = None
        for rate in plan.loads:
            if saturated_at is not None:
                # Its backlog is still draining: a higher load would measure that backlog, not the load.
                result["latency"].append({"offered": rate, "skipped": f"not sustained at {saturated_at:,.0f}/s"})
                continue
            row = await measure_latency(system, rate, plan.load_seconds, plan.drain_seconds)
            result["latency"].append(row)
            system.check()
            if not row["sustained"]:
                saturated_at = rate
        result["peak_rss_mb"] = system.peak_rss_mb()
        result["details"] = await system.details()
        result["ok"] = True
    except Exception as exc:
        log.exception("%s failed", system.key)
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["peak_rss_mb"] = system.peak_rss_mb()
    finally:
        try:
            await asyncio.wait_for(system.stop(), 60)
        except Exception as exc:
            log.warning("%s did not stop cleanly: %r", system.key, exc)
        result["wall_seconds"] = time.monotonic() - t0
    return result
