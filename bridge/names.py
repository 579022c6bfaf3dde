"""The bridge's consumer name and the live bridges' state documents (their keys are in
frame_buffer_sdk.keys, with every other Redis key name)."""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from typing import Any

from redis.asyncio import Redis

from frame_buffer_sdk.keys import bridge_state_key, bridges_key

# Bridges report every second and their state lives this long; an older one has stopped.
STATE_TTL_SECONDS = 10


async def bridge_states(redis: Redis, app_id: str) -> list[dict[str, Any]]:
    """Every live bridge's state document, by consumer name: one ZRANGEBYSCORE and one MGET.

    Never a SCAN: it would walk every key of the Redis, pixel keys and all, on every poll.
    """
    names = await redis.zrangebyscore(bridges_key(app_id), time.time() - STATE_TTL_SECONDS, "+inf")
    keys = [bridge_state_key(app_id, n.decode() if isinstance(n, bytes) else str(n)) for n in names]
    states = [json.loads(v) for v in (await redis.mget(keys) if keys else []) if v]
    return sorted(states, key=lambda b: str(b.get("consumer")))


def default_consumer_name() -> str:
    """Unique per process, so several bridges can share one stream and a restart is a new consumer.

    The random part keeps two containers that both run as pid 1 on hosts with the same name apart.
    """
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
