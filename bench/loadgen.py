"""The load generator, run as its own process so its pacing never competes with the receivers' loop.

``python -m bench.loadgen --sink redis|kafka --url URL --target TEMPLATE --capabilities a,b,c``
reads one JSON command per stdin line, ``{"tag": str, "rate": float, "count": int}``, sends
``count`` frames at ``rate`` frames/s (0 = as fast as it can) and answers one JSON line
``{"tag", "sent", "started", "ended", "rate"}``. ``TEMPLATE`` may contain ``{cap}``: each
frame goes to the stream or topic of its capability.

Pacing is by schedule, not by sleeping a fixed interval: at each wake-up it sends every
frame whose due time has passed, so a slow wake-up is caught up instead of lowering the rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer

from bench.frames import capability_of, flat_fields
from bench.stages import baseline_producer
from core.settings import load_settings
from frame_buffer_sdk.kafka_security import PLAINTEXT, KafkaSecurity

MAX_BATCH = 500
Sender = Callable[[list[tuple[str, dict[str, str]]]], Awaitable[None]]


async def redis_sender(url: str) -> tuple[Sender, Callable[[], Awaitable[None]]]:
    client = aioredis.Redis.from_url(url)

    async def send(batch: list[tuple[str, dict[str, str]]]) -> None:
        pipe = client.pipeline(transaction=False)
        for target, fields in batch:
            pipe.xadd(target, fields)  # type: ignore[arg-type]
        await pipe.execute()

    return send, client.aclose


async def kafka_sender(
    bootstrap_servers: str, security: KafkaSecurity = PLAINTEXT
) -> tuple[Sender, Callable[[], Awaitable[None]]]:
    producer: AIOKafkaProducer = baseline_producer(bootstrap_servers, "bench-loadgen", security)
    await producer.start()

    async def send(batch: list[tuple[str, dict[str, str]]]) -> None:
        futures = [
            await producer.send(target, json.dumps(fields).encode(), key=fields["camera_id"].encode())
            for target, fields in batch
        ]
        await asyncio.gather(*futures)

    return send, producer.stop


async def generate(
    send: Sender,
    template: str,
    capabilities: list[str],
    cameras: int,
    tag: str,
    rate: float,
    count: int,
    fanout: bool = False,
) -> dict[str, object]:
    """``fanout``: every frame asks for all the capabilities (the capture stream is the one target)."""
    targets = {cap: template.format(cap=cap) for cap in capabilities}
    every = ",".join(capabilities)
    started_wall = time.time()
    t0 = time.perf_counter()
    sent = 0
    while sent < count:
        if rate > 0:
            due = min(count, int((time.perf_counter() - t0) * rate) + 1)
            if due <= sent:
                await asyncio.sleep(max(0.0, t0 + sent / rate - time.perf_counter()))
                continue
            size = min(due - sent, MAX_BATCH)
        else:
            size = min(count - sent, MAX_BATCH)
        now = time.time()
        batch = []
        for seq in range(sent, sent + size):
            camera = seq % cameras
            cap = capability_of(camera, capabilities)
            batch.append((targets[cap], flat_fields(tag, seq, camera, every if fanout else cap, now)))
        await send(batch)
        sent += size
    elapsed = time.perf_counter() - t0
    return {
        "tag": tag,
        "sent": sent,
        "started": started_wall,
        "ended": started_wall + elapsed,
        "rate": sent / elapsed if elapsed > 0 else 0.0,
    }


async def serve(args: argparse.Namespace) -> None:
    capabilities = [c for c in args.capabilities.split(",") if c]
    if args.sink == "redis":
        send, close = await redis_sender(args.url)
    else:
        send, close = await kafka_sender(args.url, load_settings().kafka_security)
    loop = asyncio.get_running_loop()
    print(json.dumps({"ready": True}), flush=True)
    try:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            command = json.loads(line)
            result = await generate(
                send,
                args.target,
                capabilities,
                int(command.get("cameras", args.cameras)),
                str(command["tag"]),
                float(command["rate"]),
                int(command["count"]),
                bool(command.get("fanout", False)),
            )
            print(json.dumps(result), flush=True)
    finally:
        await close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sink", choices=("redis", "kafka"), required=True)
    parser.add_argument("--url", required=True, help="Redis URL, or Kafka bootstrap servers host:port")
    parser.add_argument("--target", required=True, help="stream or topic; {cap} is replaced by the capability")
    parser.add_argument("--capabilities", required=True, help="comma-separated; camera i asks for the (i mod n)th")
    parser.add_argument("--cameras", type=int, default=32)
    asyncio.run(serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
