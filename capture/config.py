"""What the video capture needs to know, and nothing else: built from the orchestrator's
Settings at its entrypoint (``app.configs.capture_config``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CaptureConfig:
    app_id: str
    redis_url: str
    capture_stream: str
    # How long a frame's pixels stay in Redis for the processors to load.
    frame_ttl_seconds: int
