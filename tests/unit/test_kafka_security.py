"""Every Kafka client of the project gets the same transport security, from one settings object."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from app.configs import bridge_config, failover_config, relay_config
from app.transport import faust_credentials
from core.settings import Settings

SASL_SSL = {
    "kafka_security_protocol": "SASL_SSL",
    "kafka_sasl_mechanism": "SCRAM-SHA-512",
    "kafka_sasl_username": "frame-orchestrator",
    "kafka_sasl_password": "kafka-secret-pw",
}


class Built(Exception):
    """Raised by a client's start(): the test only wants to see how it was built."""


class Recorder:
    def __init__(self) -> None:
        self.built: list[tuple[str, dict[str, Any]]] = []

    def fake(self, kind: str) -> Any:
        def build(*args: Any, **kwargs: Any) -> Any:
            self.built.append((kind, kwargs))
            client = mock.MagicMock()
            client.start = mock.AsyncMock(side_effect=Built(kind))
            client.stop = mock.AsyncMock()
            client.close = mock.AsyncMock()
            client.bootstrap = mock.AsyncMock(side_effect=Built(kind))
            return client

        return build


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    targets = [
        ("frame_buffer_sdk.kafka.AIOKafkaProducer", "producer"),
        ("frame_buffer_sdk.kafka.AIOKafkaAdminClient", "admin"),
        ("core.lag.AIOKafkaConsumer", "lag consumer"),
        ("core.lag.AIOKafkaAdminClient", "lag admin"),
        ("agents.failover.AIOKafkaConsumer", "failover consumer"),
        ("agents.failover.AIOKafkaAdminClient", "failover admin"),
        ("frame_buffer_sdk.pipeline.AIOKafkaConsumer", "sdk consumer"),
        ("relay.service.AIOKafkaConsumer", "relay registry consumer"),
        ("relay.delivery.AIOKafkaConsumer", "relay delivery consumer"),
        ("app.readiness.AIOKafkaClient", "readiness probe"),
    ]
    with contextlib.ExitStack() as stack:
        for target, kind in targets:
            stack.enter_context(mock.patch(target, rec.fake(kind)))
        yield rec


def security_part(kwargs: dict[str, Any]) -> dict[str, Any]:
    keys = ("security_protocol", "ssl_context", "sasl_mechanism", "sasl_plain_username", "sasl_plain_password")
    return {k: kwargs.get(k) for k in keys}


async def test_every_client_gets_the_same_security(recorder: Recorder, tmp_path: Path) -> None:
    from agents.failover import reroute_backlog
    from app.main import _kafka_sender, faust_app
    from app.readiness import BrokerProbe
    from bridge.service import Bridge
    from core.lag import LagSampler
    from frame_buffer_sdk.kafka import ensure_topics, start_reliable_producer
    from frame_buffer_sdk.models import ProcessorRecord
    from frame_buffer_sdk.pipeline import FramePipeline, PipelineConfig
    from relay.delivery import Delivery
    from relay.queues import Queue
    from relay.service import Relay

    settings = Settings(**SASL_SSL, store="memory://", data_dir=str(tmp_path))
    security = settings.kafka_security
    expected = security.client_kwargs()
    assert expected["security_protocol"] == "SASL_SSL" and expected["ssl_context"] is not None

    async def expect_built(work: Any) -> None:
        with pytest.raises(Built):
            await work

    await expect_built(ensure_topics(settings.bootstrap_servers, [("t", 1)], security=security))
    await expect_built(start_reliable_producer(settings.bootstrap_servers, "p", security=security))
    # /ready's broker round trip: the failure is its answer, the client was built all the same.
    assert await BrokerProbe(settings.bootstrap_servers, "ready", security).check()
    # The router's own producer (agents.sender), as the worker builds it.
    await expect_built(_kafka_sender(settings).start())
    await expect_built(LagSampler(settings.bootstrap_servers, security=security).start())
    now = "2026-01-01T00:00:00+00:00"
    record = ProcessorRecord(
        id="p", capabilities=["x"], topic="t", consumer_group="g", last_heartbeat=now, registered_at=now
    )
    await expect_built(reroute_backlog(failover_config(settings), record))
    # The bridge and the SDK build their clients from the settings alone.
    redis = mock.MagicMock(xgroup_create=mock.AsyncMock())
    await expect_built(Bridge(bridge_config(settings), redis=redis).start())
    pipeline = FramePipeline(settings, PipelineConfig(processor_id="p", topic="t", group="g"), mock.AsyncMock())
    with mock.patch("frame_buffer_sdk.pipeline.ensure_topics", mock.AsyncMock()) as topics:
        await expect_built(pipeline.start())
    assert topics.call_args.kwargs["security"] == security
    # The relay (detektr's processors): its registry follower and each delivery's consumer.
    relay = Relay(relay_config(settings))
    with (
        mock.patch("relay.service.ensure_topics", mock.AsyncMock()) as topics,
        mock.patch("relay.service.start_reliable_producer", mock.AsyncMock()) as producer,
    ):
        await expect_built(relay.serve())
    assert topics.call_args.kwargs["security"] == security and producer.call_args.kwargs["security"] == security
    await relay.close()
    delivery = Delivery(
        relay_config(settings),
        Queue("p", "frames:ready:p", 10),
        mock.MagicMock(xgroup_create=mock.AsyncMock()),
        mock.MagicMock(),
    )
    await expect_built(delivery.run())

    kinds = {kind for kind, _ in recorder.built}
    assert kinds >= {"producer", "admin", "lag consumer", "lag admin", "failover consumer", "failover admin"}
    assert {"sdk consumer", "relay registry consumer", "relay delivery consumer", "readiness probe"} <= kinds
    for kind, kwargs in recorder.built:
        assert security_part(kwargs) == expected, kind

    # And the Faust app (its consumers, producer and admin client) from broker_credentials.
    app = faust_app(settings)
    assert credentials_to_aiokafka_auth(app.conf.broker_credentials) == expected


def test_plaintext_is_the_default_and_faust_keeps_its_own() -> None:
    security = Settings().kafka_security
    assert security.client_kwargs() == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(security) is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "KAFKA_SASL_USERNAME"),
        ({"kafka_security_protocol": "SASL_PLAIN"}, "kafka_security_protocol"),
        ({"kafka_sasl_mechanism": "GSSAPI"}, "kafka_sasl_mechanism"),
        ({"kafka_ssl_cafile": __file__}, "KAFKA_SECURITY_PROTOCOL=SSL"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_cafile": "/nonexistent/ca.pem"}, "no such file"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_certfile": __file__}, "KAFKA_SSL_KEYFILE"),
    ],
)
def test_unusable_combinations_fail_at_start(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings(**overrides)


def test_sasl_password_stays_secret() -> None:
    settings = Settings(**SASL_SSL)
    assert "kafka-secret-pw" not in repr(settings) and "kafka-secret-pw" not in repr(settings.kafka_security)
    assert settings.kafka_security.username == settings.kafka_sasl_username
    assert settings.kafka_security.password == settings.kafka_sasl_password
