"""SASL_SSL against a real Apache Kafka under testcontainers: the managed-cluster setup (MSK,
Confluent Cloud, Aiven) end to end, for every kind of client the services build.

Runs where a Docker engine answers; elsewhere it skips and says why (the embedded Tansu has no
SASL; mutual TLS to it is tested in test_kafka_tls.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from core.settings import Settings
from devtools.devstack import docker_engine_available, free_port
from frame_buffer_sdk.kafka import ensure_topics
from tests.integration.tls import make_certs

pytestmark = pytest.mark.integration

USER, PASSWORD = "frame-buffer", "sasl-ssl-smoke-password"
JAAS = (
    "org.apache.kafka.common.security.plain.PlainLoginModule required "
    f'username="admin" password="admin-secret" user_admin="admin-secret" user_{USER}="{PASSWORD}";'
)


@pytest.fixture(scope="module")
def sasl_ssl_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """An Apache Kafka whose client listener is SASL_SSL (PLAIN) with a certificate of a test CA."""
    if not docker_engine_available():
        pytest.skip("no Docker engine answers (`docker info` fails): the Apache Kafka SASL_SSL test needs one")
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    certs = make_certs(tmp_path_factory.mktemp("sasl-ssl"))
    keystore = certs["server.pem"].parent / "keystore.pem"
    keystore.write_text(certs["server.key"].read_text() + certs["server.pem"].read_text())
    keystore.chmod(0o644)
    port = free_port()
    env = {
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_LISTENERS": "PLAINTEXT://localhost:9092,CONTROLLER://localhost:9093,SASL_SSL://0.0.0.0:9094",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://localhost:9092,SASL_SSL://localhost:{port}",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL",
        "KAFKA_INTER_BROKER_LISTENER_NAME": "PLAINTEXT",
        "KAFKA_SASL_ENABLED_MECHANISMS": "PLAIN",
        "KAFKA_LISTENER_NAME_SASL__SSL_PLAIN_SASL_JAAS_CONFIG": JAAS,
        "KAFKA_SSL_KEYSTORE_TYPE": "PEM",
        "KAFKA_SSL_KEYSTORE_LOCATION": "/certs/keystore.pem",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
    }
    container = DockerContainer("apache/kafka:3.9.0").with_bind_ports(9094, port)
    container = container.with_volume_mapping(str(keystore.parent), "/certs", "ro")
    for name, value in env.items():
        container = container.with_env(name, value)
    with container:
        wait_for_logs(container, "Kafka Server started", timeout=120)
        yield port, certs["ca.pem"]


async def test_every_client_kind_works_over_sasl_ssl(
    sasl_ssl_kafka: tuple[int, Path], make_settings: Any, unique: str
) -> None:
    port, ca = sasl_ssl_kafka
    settings: Settings = make_settings(
        kafka_broker=f"kafka://localhost:{port}",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username=USER,
        kafka_sasl_password=PASSWORD,
        kafka_ssl_cafile=str(ca),
    )
    security = settings.kafka_security
    topic = f"sasl-ssl-smoke-{unique}"
    # The admin client (topic creation), a producer and a consumer group, as every service builds them.
    await ensure_topics(settings.bootstrap_servers, [(topic, 2)], 1, security=security)
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, **security.client_kwargs())
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait(topic, key=f"cam-{i % 3}".encode(), value=f"frame-{i}".encode())
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.bootstrap_servers,
        group_id=f"smoke-{unique}",
        auto_offset_reset="earliest",
        **security.client_kwargs(),
    )
    await consumer.start()
    try:
        seen: set[bytes] = set()
        async with asyncio.timeout(60):
            while len(seen) < 10:
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    seen.update(r.value for r in records if r.value is not None)
        assert seen == {f"frame-{i}".encode() for i in range(10)}
    finally:
        await consumer.stop()

    # A wrong password is refused by the broker, not silently downgraded.
    wrong = make_settings(
        kafka_broker=f"kafka://localhost:{port}",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_username=USER,
        kafka_sasl_password="not-the-password-at-all",
        kafka_ssl_cafile=str(ca),
    )
    refused = AIOKafkaProducer(bootstrap_servers=wrong.bootstrap_servers, **wrong.kafka_security.client_kwargs())
    with pytest.raises((KafkaError, OSError)):
        await asyncio.wait_for(refused.start(), 30)
    with contextlib.suppress(KafkaError, OSError):
        await refused.stop()
