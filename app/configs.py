"""Settings -> each service's own typed config: the one place the entrypoints turn the
environment into what a service reads (the uvicorn/arq pattern).

Services below app/ never see Settings (tests/unit/test_layout.py checks it); each takes the
small frozen config built here, so what a piece depends on is written in its signature.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agents.backpressure import Thresholds
from agents.config import (
    DedupeConfig,
    FailoverConfig,
    HealthConfig,
    HealthWatchConfig,
    RegistryConfig,
    RoutingConfig,
)
from bridge.config import BridgeConfig
from core.process import ProcessConfig
from core.settings import Settings
from frame_buffer_sdk.names import ProcessorNames
from migrate.config import MigrateConfig
from relay.config import RelayConfig

if TYPE_CHECKING:
    # The capture package brings PyAV with it; the worker importing this module must not.
    from capture.config import CaptureConfig


def processor_names(settings: Settings) -> ProcessorNames:
    return ProcessorNames(settings.ready_topic_prefix, settings.processor_group_prefix)


def thresholds(settings: Settings) -> Thresholds:
    return Thresholds(
        elevated=settings.bp_elevated,
        high=settings.bp_high,
        critical=settings.bp_critical,
        hysteresis=settings.bp_hysteresis,
    )


def health_config(settings: Settings) -> HealthConfig:
    return HealthConfig(
        heartbeat_interval=settings.heartbeat_interval,
        heartbeat_misses=settings.heartbeat_misses,
        stall_timeout=settings.stall_timeout,
        recovery_heartbeats=settings.recovery_heartbeats,
    )


def routing_config(settings: Settings) -> RoutingConfig:
    return RoutingConfig(
        app_id=settings.app_id,
        dead_letter_topic=settings.dead_letter_topic,
        names=processor_names(settings),
        dedupe=DedupeConfig(window_seconds=settings.dedupe_window_seconds, max_pairs=settings.dedupe_max_pairs),
        frame_ttl_seconds=settings.frame_ttl_seconds,
        frame_key_prefix=settings.processor_frame_key_prefix,
    )


def registry_config(settings: Settings) -> RegistryConfig:
    return RegistryConfig(
        heartbeat_interval=settings.heartbeat_interval,
        heartbeat_misses=settings.heartbeat_misses,
        processor_partitions=settings.processor_partitions,
        names=processor_names(settings),
    )


def failover_config(settings: Settings) -> FailoverConfig:
    return FailoverConfig(
        app_id=settings.app_id,
        bootstrap_servers=settings.bootstrap_servers,
        kafka_security=settings.kafka_security,
        captured_topic=settings.captured_topic,
    )


def health_watch_config(settings: Settings) -> HealthWatchConfig:
    return HealthWatchConfig(
        app_id=settings.app_id,
        bootstrap_servers=settings.bootstrap_servers,
        kafka_security=settings.kafka_security,
        captured_topic=settings.captured_topic,
        captured_partitions=settings.captured_partitions,
        lag_sample_interval=settings.lag_sample_interval,
        router_lag_budget=settings.router_lag_budget,
        thresholds=thresholds(settings),
        health=health_config(settings),
        failover=failover_config(settings),
    )


def bridge_config(settings: Settings) -> BridgeConfig:
    return BridgeConfig(
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


def relay_config(settings: Settings) -> RelayConfig:
    return RelayConfig(
        app_id=settings.app_id,
        redis=settings.redis,
        bootstrap_servers=settings.bootstrap_servers,
        kafka_security=settings.kafka_security,
        dead_letter_topic=settings.dead_letter_topic,
        topic_replication_factor=settings.topic_replication_factor,
        names=processor_names(settings),
        consumer_fetch_max_wait_ms=settings.consumer_fetch_max_wait_ms,
        broker_session_timeout=settings.broker_session_timeout,
        broker_rebalance_timeout=settings.broker_rebalance_timeout,
        broker_heartbeat_interval=settings.broker_heartbeat_interval,
    )


def capture_config(settings: Settings) -> CaptureConfig:
    from capture.config import CaptureConfig

    return CaptureConfig(
        app_id=settings.app_id,
        redis_url=settings.redis_url,
        capture_stream=settings.capture_stream,
        frame_ttl_seconds=settings.frame_ttl_seconds,
    )


def migrate_config(settings: Settings) -> MigrateConfig:
    return MigrateConfig(
        app_id=settings.app_id,
        redis=settings.redis,
        capture_stream=settings.capture_stream,
        capture_group=settings.capture_group,
        bootstrap_servers=settings.bootstrap_servers,
        kafka_security=settings.kafka_security,
        topic_replication_factor=settings.topic_replication_factor,
        dead_letter_topic=settings.dead_letter_topic,
        control_topic=settings.control_topic,
        names=processor_names(settings),
        processor_partitions=settings.processor_partitions,
        heartbeat_interval=settings.heartbeat_interval,
        heartbeat_misses=settings.heartbeat_misses,
    )


def process_config(settings: Settings, role: str, metrics_port: int = 0) -> ProcessConfig:
    """The process-level part of a service ``role`` ("bridge", "relay", "capture"); ``metrics_port``
    is the role's own *_METRICS_PORT (0: none)."""
    return ProcessConfig(
        log_level=settings.log_level,
        shutdown_grace_seconds=settings.shutdown_grace_seconds,
        metrics_host=settings.metrics_host,
        metrics_port=metrics_port,
        service_name=settings.service_name(role),
        otel_exporter_otlp_endpoint=settings.otel_exporter_otlp_endpoint,
        otel_sampling_ratio=settings.otel_sampling_ratio,
        metrics_v1_aliases=settings.metrics_v1_aliases,
    )
