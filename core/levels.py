"""The backpressure level: one enum for the workers that compute it and the bridge that obeys it.

Ordered (an IntEnum), so "at least HIGH" is a comparison; on the wire (the Redis key the bridge
reads, the API, the metrics' help text) it travels by name or by value, never by a second enum."""

from __future__ import annotations

from enum import IntEnum


class Level(IntEnum):
    NORMAL = 0
    ELEVATED = 1
    HIGH = 2
    CRITICAL = 3
