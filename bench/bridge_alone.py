"""Bridge throughput: fill a fresh stream, then time one bridge draining it into Kafka.

``python -m bench.bridge_alone --entries 50000`` uses KAFKA_BROKER/REDIS_URL when set, else starts
the dev stack. Prints entries/s of the drain (the bridge's own start-up excluded).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import time

import redis.asyncio as aioredis

from app.configs import bridge_config
from bridge.service import Bridge
from core.settings import load_settings
from devtools.devstack import DevStack

FILL_CHUNK = 2000


def _entry(n: int, cameras: int) -> dict[str, str]:
    camera = f"cam-{n % cameras:03d}"
    return {
        "frame_id": f"bench-{n}",
        "camera_id": camera,
        "timestamp": f"{time.time():.6f}",
        "sequence": str(n // cameras),
        "width": "320",
        "height": "240",
        "format": "gray8",
        "size_bytes": "76800",
        "priority": str(n % 10),
        "capabilities": "motion,brightness",
        "frame_key": f"bench:px:{n}",
        "traceparent": f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01",
    }


async def _fill(redis: aioredis.Redis, stream: str, entries: int, cameras: int) -> None:
    for start in range(0, entries, FILL_CHUNK):
        async with redis.pipeline(transaction=False) as pipe:
            for n in range(start, min(start + FILL_CHUNK, entries)):
                pipe.xadd(stream, _entry(n, cameras))  # type: ignore[arg-type]
            await pipe.execute()


async def bench(kafka_url: str, redis_url: str, entries: int, batch: int, cameras: int) -> tuple[float, float]:
    """(entries/s, CPU microseconds of this process per entry) of the drain."""
    tag = secrets.token_hex(4)
    settings = load_settings(
        kafka_broker=kafka_url,
        redis_url=redis_url,
        app_id=f"bench-{tag}",
        capture_stream=f"bench:{tag}",
        capture_group=f"bench-{tag}",
        captured_topic=f"bench.captured.{tag}",
        dead_letter_topic=f"bench.dead.{tag}",
        bridge_batch_size=batch,
        bridge_block_ms=100,
        bridge_metrics_port=0,
    )
    redis = aioredis.from_url(redis_url)
    try:
        await _fill(redis, settings.capture_stream, entries, cameras)
        bridge = Bridge(bridge_config(settings), consumer="bench")
        await bridge.start()
        started, cpu_started = time.perf_counter(), time.process_time()
        serving = asyncio.create_task(bridge.serve())
        while True:  # the counter moves once per batch; 10 ms polls cost nothing next to that
            if bridge.mirrored_total >= entries:
                break
            await asyncio.sleep(0.01)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        await bridge.close()
        await serving
        await redis.delete(settings.capture_stream)
    finally:
        await redis.aclose()
    return entries / elapsed, cpu / entries * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500, help="BRIDGE_BATCH_SIZE")
    parser.add_argument("--cameras", type=int, default=50)
    args = parser.parse_args()
    kafka, redis_url = os.environ.get("KAFKA_BROKER"), os.environ.get("REDIS_URL")
    with DevStack(kafka_url=kafka, redis_url=redis_url) as stack:
        assert stack.kafka_url and stack.redis_url
        rate, cpu_us = asyncio.run(bench(stack.kafka_url, stack.redis_url, args.entries, args.batch, args.cameras))
    print(f"bridge: {args.entries} entries, batch {args.batch}: {rate:,.0f} entries/s, {cpu_us:.0f} us CPU per entry")


if __name__ == "__main__":
    main()
