"""What the bridge needs to know, and nothing else: built from the orchestrator's Settings at
its entrypoint (``app.configs.bridge_config``), so the service reads a small typed object,
not the whole environment."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo

from frame_buffer_sdk.kafka_security import KafkaSecurity
from frame_buffer_sdk.redis_connection import RedisConnection


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    app_id: str
    redis: RedisConnection
    capture_stream: str
    capture_group: str
    capture_timezone: tzinfo
    bootstrap_servers: str
    kafka_security: KafkaSecurity
    captured_topic: str
    captured_partitions: int
    dead_letter_topic: str
    topic_replication_factor: int
    batch_size: int
    block_ms: int
    claim_idle_ms: int
    claim_interval: float
    trim_acked: bool
    max_deliveries: int
    consumer_name: str | None
