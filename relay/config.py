"""What the relay needs to know, and nothing else: built from the orchestrator's Settings at
its entrypoint (``app.configs.relay_config``)."""

from __future__ import annotations

from dataclasses import dataclass

from frame_buffer_sdk.kafka_security import KafkaSecurity
from frame_buffer_sdk.names import ProcessorNames
from frame_buffer_sdk.redis_connection import RedisConnection


@dataclass(frozen=True, slots=True)
class RelayConfig:
    app_id: str
    redis: RedisConnection
    bootstrap_servers: str
    kafka_security: KafkaSecurity
    dead_letter_topic: str
    topic_replication_factor: int
    names: ProcessorNames
    # Each delivery's consumer joins its processor's group with these.
    consumer_fetch_max_wait_ms: int
    broker_session_timeout: float
    broker_rebalance_timeout: float
    broker_heartbeat_interval: float
