"""Effectively-once helpers: a (frame_id, capability) pair is routed once per window.

At-least-once delivery upstream (bridge retries, XAUTOCLAIM, rebalances) can hand the
router the same frame twice; the caller remembers each routed pair in a windowed table
under `dedupe_key` and drops a pair it finds there still inside the window.
"""

from __future__ import annotations

SEPARATOR = "|"


def dedupe_key(frame_id: str, capability: str) -> str:
    """Table key of one routed pair. Capability names cannot contain '|', so keys never collide."""
    return f"{frame_id}{SEPARATOR}{capability}"


def within_window(stored_at: float | None, now: float, window_seconds: float) -> bool:
    """Whether a pair stored at `stored_at` still counts as seen at `now`.

    A timestamp from the future (clock skew between workers) counts as seen, never as expired.
    """
    if window_seconds <= 0:
        raise ValueError(f"window_seconds must be positive, got {window_seconds}")
    if stored_at is None:
        return False
    return now - stored_at < window_seconds
