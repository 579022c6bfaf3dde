"""The systems our pipeline is compared with, in the same run, with the same frames and receivers.

Limits (what the hops cost with no logic at all):

* ``null``: capture stream -> null-bridge -> Kafka -> null-router -> processor topics -> receivers.
  The same hops and processes as ours.
* ``raw-kafka``: the load generator produces straight to the processor topics.
* ``raw-redis``: the load generator XADDs straight to per-processor streams.

What users run today:

* ``redis-fanout``: one consumer group reads the capture stream and XADDs each frame to the
  stream of the processor for its capability; processors XREADGROUP their stream.
"""

from __future__ import annotations

import contextlib
import sys

import redis.asyncio as aioredis

from bench.receivers import KafkaReceivers, StreamReceivers
from bench.scenarios import BenchEnv, System, processor_id
from devtools.processes import ChildProcess
from frame_buffer_sdk.kafka import ensure_topics

PROCESSOR_PARTITIONS = 4
CAPTURED_PARTITIONS = 8


class _KafkaExit(System):
    """Receivers on one Kafka topic per processor, each in the processor's consumer group."""

    def __init__(self, env: BenchEnv) -> None:
        super().__init__(env)
        self.topics = {cap: f"{env.ns}.ready.{processor_id(cap)}" for cap in env.capabilities}
        self.receivers = KafkaReceivers(
            env.bootstrap,
            {f"processor.{env.ns}.{processor_id(c)}": t for c, t in self.topics.items()},
            self.recorder,
            env.security,
        )

    async def stop(self) -> None:
        await self.stop_loadgen()
        await self.receivers.stop()
        self.stop_children()


class _StreamExit(System):
    """Receivers on one Redis stream per processor."""

    def __init__(self, env: BenchEnv) -> None:
        super().__init__(env)
        self.stream_template = f"{env.ns}:ready:{{cap}}"
        self.streams = [self.stream_template.format(cap=cap) for cap in env.capabilities]
        self.receivers = StreamReceivers(env.redis_url, self.streams, "processors", self.recorder)

    async def stop(self) -> None:
        await self.stop_loadgen()
        await self.receivers.stop()
        self.stop_children()
        client = aioredis.Redis.from_url(self.env.redis_url)
        with contextlib.suppress(Exception):
            await client.delete(*self.streams, f"{self.env.ns}:capture")
        await client.aclose()


class RawKafka(_KafkaExit):
    key = "raw-kafka"
    label = "raw aiokafka produce -> consume"
    role = "limit"

    async def start(self) -> None:
        await ensure_topics(self.env.bootstrap, [(t, PROCESSOR_PARTITIONS) for t in self.topics.values()])
        await self.receivers.start()
        await self.start_loadgen("kafka", self.env.bootstrap, f"{self.env.ns}.ready.{processor_id('{cap}')}")


class RawRedis(_StreamExit):
    key = "raw-redis"
    label = "raw Redis XADD -> XREADGROUP"
    role = "limit"

    async def start(self) -> None:
        await self.receivers.start()
        await self.start_loadgen("redis", self.env.redis_url, self.stream_template)


class NullPipeline(_KafkaExit):
    key = "null"
    label = "null pipeline (same hops, no logic)"
    role = "limit"

    async def start(self) -> None:
        env = self.env
        captured = f"{env.ns}.captured"
        stream = f"{env.ns}:capture"
        await ensure_topics(
            env.bootstrap,
            [(captured, CAPTURED_PARTITIONS), *((t, PROCESSOR_PARTITIONS) for t in self.topics.values())],
        )
        py = [sys.executable, "-m", "bench.stages"]
        bridge = ChildProcess(
            "null-bridge",
            [
                *py,
                "null-bridge",
                "--redis-url",
                env.redis_url,
                "--stream",
                stream,
                "--group",
                "bridge",
                "--bootstrap",
                env.bootstrap,
                "--topic",
                captured,
            ],
            None,
            env.log_dir,
        )
        routes = [f"--route={cap}={topic}" for cap, topic in self.topics.items()]
        router = ChildProcess(
            "null-router",
            [
                *py,
                "null-router",
                "--bootstrap",
                env.bootstrap,
                "--topic",
                captured,
                "--group",
                f"{env.ns}-router",
                *routes,
            ],
            None,
            env.log_dir,
        )
        self.children += [bridge, router]
        bridge.start()
        router.start()
        await self.receivers.start()
        await self.start_loadgen("redis", env.redis_url, stream)


class RedisFanout(_StreamExit):
    key = "redis-fanout"
    label = "plain Redis Streams fan-out"
    role = "today"

    async def start(self) -> None:
        env = self.env
        stream = f"{env.ns}:capture"
        fanout = ChildProcess(
            "fanout",
            [
                sys.executable,
                "-m",
                "bench.stages",
                "fanout",
                "--redis-url",
                env.redis_url,
                "--stream",
                stream,
                "--group",
                "fanout",
                "--target",
                self.stream_template,
            ],
            None,
            env.log_dir,
        )
        self.children.append(fanout)
        fanout.start()
        await self.receivers.start()
        await self.start_loadgen("redis", env.redis_url, stream)
