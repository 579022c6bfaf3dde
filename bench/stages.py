"""Baseline services, each run as its own process like the real bridge and worker are.

``python -m bench.stages null-bridge|null-router|fanout [options]``

* null-bridge: XREADGROUP the capture stream -> produce each entry to the captured topic
  -> XACK once the broker acknowledged. The hop of our bridge, with no parsing and no checks.
* null-router: consume the captured topic -> produce each record to its processor's topic
  (the capability rides in a header, so nothing is parsed) -> commit after the acks.
  The hop of our routing agent with no routing logic, no tables and no tracing.
* fanout: what users run today without an orchestrator: one consumer group reads the capture
  stream and XADDs each entry to the stream of the processor for its capability.

All three use the same delivery guarantees as our services (at-least-once: acknowledge the
source only after the destination has the record) and the same producer settings.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from typing import cast

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from redis.exceptions import ResponseError

from bench.frames import StreamReply
from core.settings import load_settings
from frame_buffer_sdk.kafka import reliable_producer
from frame_buffer_sdk.kafka_security import PLAINTEXT, KafkaSecurity

CAP_HEADER = "capability"


def baseline_producer(bootstrap: str, client_id: str, security: KafkaSecurity = PLAINTEXT) -> AIOKafkaProducer:
    """Our services' producer settings as they end up on the embedded Tansu broker, which refuses
    idempotent producers: acks=all, linger 5 ms, 1 MiB batches (frame_buffer_sdk.kafka.start_reliable_producer)."""
    return reliable_producer(bootstrap, client_id, idempotent=False, security=security)


async def _ensure_group(client: aioredis.Redis, stream: str, group: str) -> None:
    with contextlib.suppress(ResponseError):  # BUSYGROUP: it exists
        await client.xgroup_create(stream, group, id="0", mkstream=True)


async def null_bridge(
    redis_url: str, stream: str, group: str, bootstrap: str, topic: str, batch: int, security: KafkaSecurity
) -> None:
    client = aioredis.Redis.from_url(redis_url)
    await _ensure_group(client, stream, group)
    producer = baseline_producer(bootstrap, "null-bridge", security)
    await producer.start()
    try:
        while True:
            reply = cast(
                StreamReply, await client.xreadgroup(group, "null-bridge", {stream: ">"}, count=batch, block=1000)
            )
            if not reply:
                continue
            ids = []
            futures = []
            for _name, entries in reply:
                for entry_id, fields in entries:
                    doc = {k.decode(): v.decode() for k, v in fields.items()}
                    futures.append(
                        await producer.send(
                            topic,
                            json.dumps(doc).encode(),
                            key=fields[b"camera_id"],
                            headers=[(CAP_HEADER, fields[b"capabilities"])],
                        )
                    )
                    ids.append(entry_id)
            await asyncio.gather(*futures)
            await client.xack(stream, group, *ids)
    finally:
        await producer.stop()
        await client.aclose()


async def null_router(
    bootstrap: str, topic: str, group: str, targets: dict[bytes, str], security: KafkaSecurity
) -> None:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        client_id="null-router",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        rebalance_timeout_ms=2000,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        max_partition_fetch_bytes=4 << 20,
        fetch_max_wait_ms=20,
        **security.client_kwargs(),
    )
    producer = baseline_producer(bootstrap, "null-router", security)
    await asyncio.gather(consumer.start(), producer.start())
    last_commit = time.monotonic()
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=100, max_records=5000)
            futures = []
            for messages in batches.values():
                for message in messages:
                    cap = next(v for k, v in message.headers if k == CAP_HEADER)
                    futures.append(await producer.send(targets[cap], message.value, key=message.key))
            if futures:
                await asyncio.gather(*futures)
            # Offsets are committed only for records whose copies the broker has acknowledged.
            if time.monotonic() - last_commit >= 0.5:
                await consumer.commit()
                last_commit = time.monotonic()
    finally:
        await consumer.stop()
        await producer.stop()


async def fanout(redis_url: str, stream: str, group: str, target: str, batch: int) -> None:
    client = aioredis.Redis.from_url(redis_url)
    await _ensure_group(client, stream, group)
    targets: dict[bytes, str] = {}
    try:
        while True:
            reply = cast(StreamReply, await client.xreadgroup(group, "fanout", {stream: ">"}, count=batch, block=1000))
            if not reply:
                continue
            pipe = client.pipeline(transaction=False)
            ids = []
            for _name, entries in reply:
                for entry_id, fields in entries:
                    cap = fields[b"capabilities"]
                    dest = targets.get(cap)
                    if dest is None:
                        dest = targets[cap] = target.format(cap=cap.decode())
                    pipe.xadd(dest, fields)  # type: ignore[arg-type]
                    ids.append(entry_id)
            pipe.xack(stream, group, *ids)
            await pipe.execute()
    finally:
        await client.aclose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="baseline services of the benchmark")
    sub = parser.add_subparsers(dest="stage", required=True)
    nb = sub.add_parser("null-bridge")
    nb.add_argument("--redis-url", required=True)
    nb.add_argument("--stream", required=True)
    nb.add_argument("--group", required=True)
    nb.add_argument("--bootstrap", required=True)
    nb.add_argument("--topic", required=True)
    nb.add_argument("--batch", type=int, default=500)
    nr = sub.add_parser("null-router")
    nr.add_argument("--bootstrap", required=True)
    nr.add_argument("--topic", required=True)
    nr.add_argument("--group", required=True)
    nr.add_argument("--route", action="append", default=[], help="capability=topic, once per processor")
    fo = sub.add_parser("fanout")
    fo.add_argument("--redis-url", required=True)
    fo.add_argument("--stream", required=True)
    fo.add_argument("--group", required=True)
    fo.add_argument("--target", required=True, help="stream per processor; {cap} is replaced by the capability")
    fo.add_argument("--batch", type=int, default=500)
    args = parser.parse_args(argv)
    # The same KAFKA_SECURITY_* as the services measured beside it (a stage is an entrypoint).
    security = load_settings().kafka_security
    if args.stage == "null-bridge":
        coro = null_bridge(args.redis_url, args.stream, args.group, args.bootstrap, args.topic, args.batch, security)
    elif args.stage == "null-router":
        routes = dict(r.split("=", 1) for r in args.route)
        targets = {k.encode(): v for k, v in routes.items()}
        coro = null_router(args.bootstrap, args.topic, args.group, targets, security)
    else:
        coro = fanout(args.redis_url, args.stream, args.group, args.target, args.batch)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(coro)


if __name__ == "__main__":
    main()
