"""Names the bridge shares with the orchestrator: Redis keys and its consumer name."""

from __future__ import annotations

import os
import secrets
import socket


def backpressure_key(app_id: str) -> str:
    """Written by the orchestrator workers, read by every bridge before each read."""
    return f"{app_id}:backpressure"


def bridge_state_key(app_id: str, consumer: str) -> str:
    """Written by each bridge about itself, read by the orchestrator's /api/v1/backpressure."""
    return f"{app_id}:bridge:{consumer}"


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
