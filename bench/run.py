"""``python -m bench.run --profile quick|full``: the whole benchmark, written to bench/results/.

Each system gets fresh servers (devtools.devstack: embedded Tansu and Valkey unless KAFKA_BROKER /
REDIS_URL name others), so no system runs against a broker already holding another's data.
Writes <profile>.json (everything measured), <profile>.md (tables) and <profile>.png (plot).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import routing_cost
from bench.baselines import NullPipeline, RawKafka, RawRedis, RedisFanout
from bench.pipeline import OurPipeline
from bench.profiles import FANOUT, NULL, OURS_1W, OURS_2W, PROFILES, RAW_KAFKA, RAW_REDIS, Profile
from bench.report import write_reports
from bench.scenarios import CAPABILITIES, BenchEnv, System, run_system
from bench.worker_drain import drain
from core.settings import load_settings
from devtools.devstack import DevStack
from frame_buffer_sdk.errors import or_exit
from frame_buffer_sdk.kafka_security import PLAINTEXT, KafkaSecurity

log = logging.getLogger("bench")
DRAIN_PER_RECORD = 20
DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def make_system(key: str, env: BenchEnv, worker_profile: Path | None = None) -> System:
    if key == OURS_1W:
        ours = OurPipeline(env, workers=1)
        if worker_profile is not None:
            # pyinstrument writes its report when the worker exits on SIGTERM.
            ours.worker_argv = [
                sys.executable,
                "-m",
                "pyinstrument",
                "-r",
                "text",
                "-o",
                str(worker_profile),
                "-m",
                "app.cli",
                "worker",
            ]
        return ours
    if key == OURS_2W:
        return OurPipeline(env, workers=2)
    factories: dict[str, type[System]] = {
        NULL: NullPipeline,
        RAW_KAFKA: RawKafka,
        RAW_REDIS: RawRedis,
        FANOUT: RedisFanout,
    }
    return factories[key](env)


def measure_routing(profile: Profile) -> list[dict[str, Any]]:
    try:
        return routing_cost.run(profile.routing_decisions, profile.routing_passes)
    except Exception as exc:
        log.exception("routing cost failed")
        return [{"mode": "both", "error": f"{type(exc).__name__}: {exc}"}]


async def run_profile(
    profile: Profile,
    out_dir: Path,
    systems: list[str] | None = None,
    profile_worker: bool = False,
    security: KafkaSecurity = PLAINTEXT,
) -> dict[str, Any]:
    started = time.monotonic()
    # A subset or a profiled run never overwrites the results of a whole, unprofiled one.
    name = profile.name + ("-subset" if systems else "") + ("-profiled" if profile_worker else "")
    log_dir = Path(tempfile.mkdtemp(prefix=f"frame-bench-{profile.name}-"))
    log.info("service logs in %s", log_dir)
    results: dict[str, Any] = {
        "profile": profile.name,
        "name": name,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(terse=True),
        },
        "cameras": 32,
        "capabilities": list(CAPABILITIES),
        "plan": profile.plan.__dict__,
        "systems": [],
    }
    log.info("routing cost: %d decisions x %d passes", profile.routing_decisions, profile.routing_passes)
    results["routing_cost"] = await asyncio.to_thread(measure_routing, profile)
    if profile.drain_frames and (systems is None or OURS_1W in systems):
        # Envelopes of 20 frames are what the bridge writes under load (one per read and partition);
        # one frame per record is its form at low load, and the worst case for the worker.
        log.info("worker alone: draining %d frames, %d per record", profile.drain_frames, DRAIN_PER_RECORD)
        results["worker_drain"] = await measure_drain(profile.drain_frames, DRAIN_PER_RECORD, security)
        log.info("worker alone: draining %d frames, one per record", profile.drain_frames)
        results["worker_drain_single"] = await measure_drain(profile.drain_frames, 1, security)
    for key in systems or list(profile.systems):
        log.info("%s: starting servers", key)
        stack = await asyncio.to_thread(DevStack().start)
        try:
            results["machine"].setdefault("kafka", stack.kafka_kind)
            results["machine"].setdefault("redis", stack.redis_kind)
            assert stack.kafka_url and stack.redis_url
            env = BenchEnv(stack.kafka_url, stack.redis_url, log_dir, ns=f"b{uuid.uuid4().hex[:8]}", security=security)
            worker_profile = out_dir / f"{name}-worker-profile.txt" if profile_worker else None
            system = make_system(key, env, worker_profile)
            result = await run_system(system, profile.plan_for(key))
        finally:
            await asyncio.to_thread(stack.stop)
        log.info("%s: %s", key, _summary(result))
        results["systems"].append(result)
    results["wall_seconds"] = time.monotonic() - started
    results["worker_profiled"] = profile_worker
    results["log_dir"] = str(log_dir)
    paths = write_reports(results, out_dir)
    log.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return results


async def measure_drain(frames: int, per_record: int, security: KafkaSecurity = PLAINTEXT) -> dict[str, Any]:
    """The worker alone (bench.worker_drain); a failure is reported, never a number."""
    try:
        return {"ok": True, **await drain(frames, min(500, frames), None, 300, per_record, security)}
    except Exception as exc:
        log.exception("worker drain failed")
        return {"ok": False, "frames": frames, "error": f"{type(exc).__name__}: {exc}"}


def _summary(result: dict[str, Any]) -> str:
    if not result.get("ok"):
        return f"FAILED: {result.get('error')}"
    parts = []
    if "throughput" in result:
        parts.append(f"{result['throughput']['rate']:,.0f} frames/s")
    for row in result.get("latency", []):
        p99 = row.get("p99_ms")
        parts.append(f"@{row['offered']:,.0f}/s p99 {p99:.1f} ms" if p99 is not None else f"@{row['offered']:,.0f}/s -")
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Frame Buffer v2 benchmark")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="directory for <profile>.json/.md/.png")
    parser.add_argument("--systems", default=None, help="comma-separated subset, e.g. ours-1w,null")
    parser.add_argument(
        "--profile-worker",
        action="store_true",
        help="run the ours-1w worker under pyinstrument, report in <out>/<profile>-worker-profile.txt "
        "(its numbers then include the profiler's overhead)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    profile = PROFILES[args.profile]
    systems = [s.strip() for s in args.systems.split(",") if s.strip()] if args.systems else None
    unknown = sorted(set(systems or []) - set(profile.systems) - {OURS_2W})
    if unknown:
        parser.error(f"unknown systems: {', '.join(unknown)}")
    args.out.mkdir(parents=True, exist_ok=True)
    security = or_exit(load_settings).kafka_security
    results = asyncio.run(run_profile(profile, args.out, systems, args.profile_worker, security))
    drained_ok = all(results.get(k, {"ok": True}).get("ok") for k in ("worker_drain", "worker_drain_single"))
    return 0 if drained_ok and all(s.get("ok") for s in results["systems"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
