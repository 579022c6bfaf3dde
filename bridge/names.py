"""Names the bridge shares with the orchestrator: Redis keys and its consumer name."""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from typing import Any

from redis.asyncio import Redis

# Bridges report every second and their state lives this long; an older one has stopped.
STATE_TTL_SECONDS = 10


def backpressure_key(app_id: str) -> str:
    """Written by the orchestrator workers, read by every bridge before each read."""
    return f"{app_id}:backpressure"


def bridge_state_key(app_id: str, consumer: str) -> str:
    """Written by each bridge about itself, read by the orchestrator's /api/v1/backpressure."""
    return f"{app_id}:bridge:{consumer}"


def bridges_key(app_id: str) -> str:
    """Sorted set of bridge consumer names by the time of their last report: where readers find
    the state keys without SCANning a keyspace full of pixel keys."""
    return f"{app_id}:bridges"


async def bridge_states(redis: Redis, app_id: str) -> list[dict[str, Any]]:
    """Every live bridge's state document, by consumer name: one ZRANGEBYSCORE and one MGET.

    Never a SCAN: it would walk every key of the Redis, pixel keys and all, on every poll.
    """
    names = await redis.zrangebyscore(bridges_key(app_id), time.time() - STATE_TTL_SECONDS, "+inf")
    keys = [bridge_state_key(app_id, n.decode() if isinstance(n, bytes) else str(n)) for n in names]
    states = [json.loads(v) for v in (await redis.mget(keys) if keys else []) if v]
    return sorted(states, key=lambda b: str(b.get("consumer")))


def trimmed_unread_key(app_id: str) -> str:
    """How many capture entries were trimmed before any bridge read them; bridges add to it."""
    return f"{app_id}:bridge-trimmed-unread"


def trim_gap_prefix(app_id: str) -> str:
    """Markers of gaps already counted, one per group position, so bridges count each once."""
    return f"{app_id}:bridge-trim-gap:"


def default_consumer_name() -> str:
    """Unique per process, so several bridges can share one stream and a restart is a new consumer.

    The random part keeps two containers that both run as pid 1 on hosts with the same name apart.
    """
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
