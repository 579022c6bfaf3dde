"""Shared fixtures: one dev stack (real Kafka and Redis) for the whole session."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from core.settings import Settings
from devtools.devstack import DevStack, free_port

# The workers' API_TOKEN and the SDK's ORCHESTRATOR_TOKEN in every test; http_json sends it.
TEST_API_TOKEN = "test-api-token-0123456789"


@pytest.fixture(scope="session")
def stack() -> Iterator[DevStack]:
    """Real servers: KAFKA_BROKER/REDIS_URL if set, else testcontainers, else embedded."""
    with DevStack() as dev:
        yield dev


@pytest.fixture
def unique() -> str:
    """A short unique suffix so each test has its own topics, groups and streams."""
    return uuid.uuid4().hex[:8]


@pytest.fixture
def make_settings(stack: DevStack, unique: str, tmp_path: Any) -> Any:
    """Settings pointing at the session stack with names of this test's own."""

    def factory(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "kafka_broker": stack.kafka_url,
            "redis_url": stack.redis_url,
            "app_id": f"fo-{unique}",
            "capture_stream": f"frames:metadata:{unique}",
            "capture_group": f"bridge-{unique}",
            "captured_topic": f"frames.captured.{unique}",
            "dead_letter_topic": f"frames.dead-letter.{unique}",
            "results_topic": f"frames.results.{unique}",
            "control_topic": f"processors.control.{unique}",
            "ready_topic_prefix": f"frames.ready.{unique}.",
            # Consumer groups outlive a test on the shared broker: a replica SIGKILLed in one
            # test must not hold up the next test's join of a group with the same processor id.
            "processor_group_prefix": f"processor.{unique}.",
            "captured_partitions": 4,
            "store": "memory://",
            "data_dir": str(tmp_path / "data"),
            "broker_rebalance_timeout": 2.0,
            "broker_session_timeout": 6.0,
            "broker_heartbeat_interval": 1.0,
            "recovery_consistency_check": stack.kafka_kind != "tansu",
            "bridge_metrics_port": 0,
            # Many processors share this host in the tests: none takes the default 9200.
            "processor_metrics_port": 0,
            "web_port": free_port(),
            "api_token": TEST_API_TOKEN,
            "orchestrator_token": TEST_API_TOKEN,
        }
        values.update(overrides)
        return Settings(**values)

    return factory
