"""What one awaited send costs inside a bare Faust agent, against the agent doing nothing.

A bare Faust app (memory store, no tables, no sensors of ours) reads N records from one topic
and, per record, either does nothing (``none``), awaits ``Topic.send`` to another topic
(``send``), or awaits Faust's producer directly (``direct``). Each mode runs in a fresh worker
process on the embedded broker and reports records/s, its CPU per record and the Kafka
requests it made, so the cost of producing from inside an agent is measured apart from all of
our routing code.

    python -m bench.faust_send_cost                      # none, send, direct; linger 0
    python -m bench.faust_send_cost --linger-ms 5 send   # one mode with the producer lingering
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from typing import Any

MODES = ("none", "send", "direct", "soon")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_worker(bootstrap: str, mode: str, records: int, linger_ms: float) -> None:
    """The measured process: one Faust worker that exits after ``records`` events."""
    import faust
    from aiokafka import AIOKafkaProducer
    from aiokafka import conn as aiokafka_conn

    from frame_buffer_sdk.kafka import ensure_topics

    requests: collections.Counter[str] = collections.Counter()
    original_send = aiokafka_conn.AIOKafkaConnection.send

    def counting_send(self: Any, request: Any, expect_response: bool = True) -> Any:
        requests[type(request).__name__] += 1
        return original_send(self, request, expect_response)

    aiokafka_conn.AIOKafkaConnection.send = counting_send  # type: ignore[method-assign]

    tag = uuid.uuid4().hex[:8]
    app = faust.App(
        f"send-cost-{tag}",
        broker=f"kafka://{bootstrap}",
        store="memory://",
        web_enabled=False,
        broker_rebalance_timeout=2.0,
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_linger=linger_ms / 1000,
    )
    source = app.topic(f"send-cost-src-{tag}", value_serializer="raw", key_serializer="raw", partitions=4)
    target = app.topic(f"send-cost-dst-{tag}", value_serializer="raw", key_serializer="raw", partitions=4)
    started: list[float] = []

    @app.agent(source)
    async def forward(stream: Any) -> None:
        seen = 0
        async for event in stream.events():
            if not started:
                started.extend((time.monotonic(), _cpu()))
                requests.clear()
            if mode == "send":
                await target.send(key=event.key, value=event.value)
            elif mode == "direct":
                await app.producer.send(target.get_topic_name(), event.key, event.value, None, None, None)
            elif mode == "soon":
                target.send_soon(key=event.key, value=event.value)
            seen += 1
            if seen == records:
                seconds, cpu = time.monotonic() - started[0], _cpu() - started[1]
                result = {
                    "mode": mode,
                    "linger_ms": linger_ms,
                    "records": records,
                    "records_per_s": round(records / seconds),
                    "cpu_us_per_record": round(cpu / records * 1e6, 1),
                    "requests": dict(requests),
                }
                print("RESULT " + json.dumps(result), flush=True)
                os._exit(0)  # the measurement is taken; a graceful Faust shutdown adds nothing

    @app.task
    async def feed() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        await producer.start()
        try:
            sent = [
                await producer.send(source.get_topic_name(), b"x" * 600, key=f"cam-{i % 32}".encode())
                for i in range(records)
            ]
            await asyncio.gather(*sent)
        finally:
            await producer.stop()

    asyncio.run(ensure_topics(bootstrap, [(source.get_topic_name(), 4), (target.get_topic_name(), 4)]))
    worker = faust.Worker(app, loglevel="warn")
    worker.spinner = None  # as app.main does: the spinner would turn every debug() into a record
    worker.execute_from_commandline()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="cost of an awaited send inside a bare Faust agent")
    parser.add_argument("modes", nargs="*", help=f"any of {', '.join(MODES)} (default: all)")
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--linger-ms", type=float, default=0.0)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    modes = args.modes or list(MODES)
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"unknown modes: {', '.join(unknown)}")
    if args.worker:
        sys.argv = [sys.argv[0], "worker"]  # what faust.Worker's command line expects
        run_worker(args.bootstrap, modes[0], args.records, args.linger_ms)
        return 0

    from devtools.devstack import DevStack

    with DevStack() as stack:
        for mode in modes:
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.faust_send_cost",
                    mode,
                    "--worker",
                    "--bootstrap",
                    stack.bootstrap_servers,
                    "--records",
                    str(args.records),
                    "--linger-ms",
                    str(args.linger_ms),
                ],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            # Faust's worker routes stdout through its logging (to stderr, with a prefix).
            output = (done.stdout + done.stderr).splitlines()
            lines = [line.partition("RESULT ")[2] for line in output if "RESULT " in line]
            if not lines:
                print(f"{mode}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
                return 1
            print(lines[-1].strip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
