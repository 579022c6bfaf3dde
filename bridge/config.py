"""What the bridge needs to know, and nothing else: built from the orchestrator's Settings at
its entrypoint, so the service reads a small typed object, not the whole environment."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo

from core.settings import Settings
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

    @classmethod
    def from_settings(cls, settings: Settings) -> BridgeConfig:
        return cls(
            app_id=settings.app_id,
            redis=settings.redis,
            capture_stream=settings.capture_stream,
            capture_group=settings.capture_group,
            capture_timezone=settings.capture_timezone,
            bootstrap_servers=settings.bootstrap_servers,
            kafka_security=settings.kafka_security,
            captured_topic=settings.captured_topic,
            captured_partitions=settings.captured_partitions,
            dead_letter_topic=settings.dead_letter_topic,
            topic_replication_factor=settings.topic_replication_factor,
            batch_size=settings.bridge_batch_size,
            block_ms=settings.bridge_block_ms,
            claim_idle_ms=settings.bridge_claim_idle_ms,
            claim_interval=settings.bridge_claim_interval,
            trim_acked=settings.bridge_trim_acked,
            max_deliveries=settings.bridge_max_deliveries,
            consumer_name=settings.bridge_consumer_name,
        )
