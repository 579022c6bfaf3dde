"""Every Kafka client over SSL with mutual TLS, on a real broker: topic creation, the bridge's and
a reliable producer, the lag sampler, and a whole Faust worker process.

The embedded Tansu speaks plain TCP only, so it runs behind tests.integration.tls.TlsTerminator
and advertises the terminator's address: every connection a client makes, bootstrap or not,
goes through TLS. (SASL needs users the embedded broker cannot be given before it requires them.)
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from app.devstack import dies_with_parent, free_port, tansu_binary, wait_for_port
from app.kafka import ensure_topics, start_reliable_producer
from app.lag import LagSampler
from app.settings import Settings
from bridge.service import Bridge
from tests.integration.cluster import Cluster, http_json, wait_ready
from tests.integration.tls import TlsTerminator, make_certs

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_certs(tmp_path_factory.mktemp("kafka-tls"))


@pytest.fixture(scope="module")
def tansu_behind_tls() -> Iterator[tuple[int, int]]:
    """(plain port, TLS port) of a Tansu that advertises the TLS port."""
    plain, tls = free_port(), free_port()
    argv = [tansu_binary(), "broker", "--listener-url", f"tcp://127.0.0.1:{plain}"]
    argv += ["--advertised-listener-url", f"tcp://127.0.0.1:{tls}", "--storage-engine", "memory://tansu/"]
    proc = subprocess.Popen(dies_with_parent(argv), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_for_port("127.0.0.1", plain, 30, proc)
        yield plain, tls
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if proc.poll() is None:
            proc.kill()


@pytest.fixture
async def tls_broker(tansu_behind_tls: tuple[int, int], certs: dict[str, Path]) -> AsyncIterator[int]:
    plain, tls = tansu_behind_tls
    async with TlsTerminator(certs, ("127.0.0.1", plain), port=tls):
        yield tls


async def test_every_client_speaks_mutual_tls_to_the_broker(
    tls_broker: int, certs: dict[str, Path], make_settings: Any, tmp_path: Path
) -> None:
    settings: Settings = make_settings(
        kafka_broker=f"kafka://127.0.0.1:{tls_broker}",
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=str(certs["ca.pem"]),
        kafka_ssl_certfile=str(certs["client.pem"]),
        kafka_ssl_keyfile=str(certs["client.key"]),
        recovery_consistency_check=False,
    )
    security = settings.kafka_security

    # Without TLS the broker's address does not answer Kafka at all.
    plain = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, request_timeout_ms=3000)
    with pytest.raises(KafkaConnectionError):
        await plain.start()
    await plain.stop()

    topic = f"{settings.captured_topic}.tls"
    await ensure_topics(settings.bootstrap_servers, [(topic, 2)], security=security)
    producer = await start_reliable_producer(settings.bootstrap_servers, "tls-test", security=security)
    try:
        await producer.send_and_wait(topic, b"over tls", key=b"cam")
    finally:
        await producer.stop()
    async with LagSampler(settings.bootstrap_servers, security=security) as sampler:
        sample = (await sampler.sample({"t": (topic, "nobody")}))["t"]
    assert sample.total == 1 and len(sample.end) == 2

    bridge = Bridge(settings)
    await bridge.start()  # creates its topics and starts its producer over TLS
    await bridge.close()

    # A whole worker (Faust consumer, producer, admin; the web API's topic creation) over TLS.
    cluster = Cluster(settings, tmp_path / "logs")
    worker, url = cluster.worker("worker-tls")
    try:
        await wait_ready(url, proc=worker)
        status, body = await http_json(
            "POST", f"{url}/api/v1/processors/register", {"id": "tls-p", "capabilities": ["x"]}
        )
        assert status == 201, body
    finally:
        cluster.close()
