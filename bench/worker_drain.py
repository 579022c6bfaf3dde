"""How fast one Faust worker routes, with nothing else in the way.

N frames are produced straight into the captured topic (no bridge, no Redis capture stream),
then one worker routes them to three registered processors. The rate is frames routed per
second of the worker's own drain, read from its stats API, so neither the bridge's pacing
nor the processors' consumption can hide or inflate what the worker itself costs.

    python -m bench.worker_drain --frames 20000
    python -m bench.worker_drain --frames 20000 --py-spy /tmp/worker.raw   # profile the drain

The end-to-end numbers of ``make bench`` include this cost plus the bridge's and the hops'.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from bench.frames import capability_of, flat_fields
from bench.pipeline import OurPipeline
from bench.scenarios import BenchEnv
from core import envelope
from core.parsing import parse_entry
from core.settings import load_settings
from devtools.devstack import DevStack
from devtools.processes import peak_rss_mb
from frame_buffer_sdk.errors import or_exit
from frame_buffer_sdk.kafka_security import PLAINTEXT, KafkaSecurity

log = logging.getLogger("bench.worker_drain")
IDLE_SECONDS = 3.0


class WorkerOnly(OurPipeline):
    """Our pipeline's worker and registered processors, without bridge, receivers or load generator."""

    async def start(self) -> None:
        await self.start_routing()

    async def routed(self) -> int:
        async with self.http.get(f"{self.base_urls[0]}/api/v1/frames/stats") as resp:
            return int((await resp.json())["routed"])


Record = tuple[bytes, bytes, int, list[tuple[str, bytes]]]


def frame_records(tag: str, count: int, env: BenchEnv, partitions: int, per_record: int = 1) -> list[Record]:
    """``count`` frames exactly as the bridge writes them to the captured topic: (key, value,
    partition, headers), ``per_record`` frames of one partition to a record (an envelope when > 1)."""
    now = time.time()
    by_partition: dict[int, list[tuple[bytes, bytes]]] = {}
    everything = list(range(partitions))
    partitioner = DefaultPartitioner()
    for seq in range(count):
        camera = seq % env.cameras
        outcome = parse_entry(flat_fields(tag, seq, camera, capability_of(camera, env.capabilities), now))
        assert outcome.frame is not None, outcome.error
        key = outcome.frame.camera_id.encode()
        by_partition.setdefault(partitioner(key, everything, everything), []).append(
            (key, outcome.frame.model_dump_json().encode())
        )
    out: list[Record] = []
    for partition, frames in by_partition.items():
        for start in range(0, len(frames), per_record):
            chunk = frames[start : start + per_record]
            if len(chunk) == 1:
                out.append((chunk[0][0], chunk[0][1], partition, []))
            else:
                values = [v for _, v in chunk]
                out.append((chunk[0][0], envelope.encode(values), partition, envelope.envelope_headers(len(values))))
    return out


async def produce(bootstrap: str, topic: str, records: list[Record], security: KafkaSecurity = PLAINTEXT) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
        max_batch_size=1 << 20,
        max_request_size=4 << 20,
        **security.client_kwargs(),
    )
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value, key=key, partition=partition, headers=headers)
            for key, value, partition, headers in records
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def drain(
    frames: int,
    warmup: int,
    py_spy: Path | None,
    limit: float,
    per_record: int = 1,
    security: KafkaSecurity = PLAINTEXT,
) -> dict[str, Any]:
    with DevStack() as stack, tempfile.TemporaryDirectory(prefix="worker-drain-") as logs:
        assert stack.kafka_url and stack.redis_url
        env = BenchEnv(stack.kafka_url, stack.redis_url, Path(logs), ns=f"drain{int(time.time())}", security=security)
        system = WorkerOnly(env, workers=1)
        await system.start()
        try:
            s0 = system.settings[0]
            # The first frames pay for partition assignment and table warm-up; not part of the rate.
            parts = s0.captured_partitions
            await produce(
                env.bootstrap, s0.captured_topic, frame_records("warm", warmup, env, parts, per_record), security
            )
            await _wait_routed(system, warmup, limit)
            proc = system.children[0].popen
            assert proc is not None
            spy = _start_py_spy(proc, py_spy) if py_spy else None
            records = frame_records("drain", frames, env, parts, per_record)
            # What the worker burns with no frames at all (timers, lag sampling, heartbeats).
            idle_before = cpu_seconds(proc.pid)
            await asyncio.sleep(IDLE_SECONDS)
            idle_share = (cpu_seconds(proc.pid) - idle_before) / IDLE_SECONDS
            cpu_before = cpu_seconds(proc.pid)
            started = time.monotonic()
            await produce(env.bootstrap, s0.captured_topic, records, security)
            produced = time.monotonic() - started
            await _wait_routed(system, warmup + frames, limit)
            seconds = time.monotonic() - started
            cpu = cpu_seconds(proc.pid) - cpu_before
            if spy is not None:
                spy.send_signal(2)  # SIGINT: py-spy writes its file and exits
                await asyncio.to_thread(spy.wait, 30)
            rss = peak_rss_mb(proc.pid)
        finally:
            await system.stop()
    return {
        "frames": frames,
        "frames_per_record": per_record,
        "seconds": round(seconds, 3),
        "frames_per_s": round(frames / seconds, 1),
        "produce_seconds": round(produced, 3),
        # The worker's own CPU per frame: what a faster machine or a quieter one cannot hide.
        "worker_cpu_us_per_frame": round(cpu / frames * 1e6, 1),
        "worker_cpu_share": round(cpu / seconds, 2),
        "worker_idle_cpu_share": round(idle_share, 2),
        "worker_peak_rss_mb": rss,
    }


async def _wait_routed(system: WorkerOnly, want: int, limit: float) -> None:
    deadline = time.monotonic() + limit
    while True:
        with contextlib.suppress(Exception):
            if await system.routed() >= want:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"worker routed fewer than {want} frames within {limit:.0f} s")
        system.check()
        await asyncio.sleep(0.05)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start_py_spy(proc: subprocess.Popen[bytes], out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["py-spy", "record", "--nonblocking", "-r", "250", "-f", "raw", "-o", str(out), "--pid", str(proc.pid)]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--per-record", type=int, default=1, help="frames per captured record (envelopes when > 1)")
    parser.add_argument("--py-spy", type=Path, default=None, help="profile the drain with py-spy into this raw file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    security = or_exit(load_settings).kafka_security
    result = asyncio.run(drain(args.frames, args.warmup, args.py_spy, args.timeout, args.per_record, security))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
