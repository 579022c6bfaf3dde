"""What the v1 migration needs to know, and nothing else: built from the orchestrator's
Settings at its entrypoint (``app.configs.migrate_config``)."""

from __future__ import annotations

from dataclasses import dataclass

from frame_buffer_sdk.kafka_security import KafkaSecurity
from frame_buffer_sdk.names import ProcessorNames
from frame_buffer_sdk.redis_connection import RedisConnection


@dataclass(frozen=True, slots=True)
class MigrateConfig:
    app_id: str
    redis: RedisConnection
    capture_stream: str
    capture_group: str
    bootstrap_servers: str
    kafka_security: KafkaSecurity
    topic_replication_factor: int
    dead_letter_topic: str
    control_topic: str
    names: ProcessorNames
    processor_partitions: int
    # A migrated processor's last heartbeat is set older than the health deadline they make.
    heartbeat_interval: float
    heartbeat_misses: int
