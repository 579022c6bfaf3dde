"""The runtime objects of one worker, travelling together instead of living in globals."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field
from typing import Any

import faust
import redis.asyncio as aioredis

from core.counters import FrameCounters
from core.ledger import Ledger
from core.topics import Topics
from frame_buffer_sdk.redis_connection import RedisConnection


@dataclass
class Tables:
    registry: Any
    load: Any
    affinity: Any
    dedupe: Any
    waiting: Any
    worker_stats: Any
    heartbeat_path: Any
    frame_counts: Any


@dataclass
class Orchestrator:
    app: faust.App
    # How to reach Redis; the client is made on first use.
    redis_connection: RedisConnection
    topics: Topics
    tables: Tables
    # One id per process start: the writer of this boot's count snapshots.
    boot_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    stats: Ledger = field(default_factory=Ledger)
    _redis: aioredis.Redis | None = None

    def __post_init__(self) -> None:
        self.stats.writer = self.boot_id

    @property
    def counters(self) -> FrameCounters:
        """Where a count made now goes: the partition of the record this task is handling."""
        return self.stats.current()

    @property
    def redis(self) -> aioredis.Redis:
        if self._redis is None:
            self._redis = self.redis_connection.client(socket_timeout=5)
        return self._redis

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
