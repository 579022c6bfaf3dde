"""Every Kafka client over SSL with mutual TLS, on a real broker: topic creation, the bridge's and
a reliable producer, the lag sampler, a whole Faust worker process and an SDK processor.

The embedded Tansu speaks plain TCP only, so it runs behind tests.integration.tls.TlsTerminator
and advertises the terminator's address: every connection a client makes, bootstrap or not,
goes through TLS. (SASL needs users the embedded broker cannot be given before it requires them.)
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from app.configs import bridge_config
from bridge.service import Bridge
from core.lag import LagSampler
from core.settings import Settings
from devtools.devstack import free_port, tansu_binary, wait_for_port
from devtools.processes import dies_with_parent
from frame_buffer_sdk import Frame, ProcessorClient
from frame_buffer_sdk.kafka import ensure_topics, start_reliable_producer
from frame_buffer_sdk.models import RoutedFrame
from tests.integration.cluster import Cluster, wait_ready, wait_until
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

    bridge = Bridge(bridge_config(settings))
    await bridge.start()  # creates its topics and starts its producer over TLS
    await bridge.close()

    # A whole worker (Faust consumer, producer, admin; the web API's topic creation) over TLS,
    # and an SDK processor registered with it: its consumer, producer and topic creation too.
    cluster = Cluster(settings, tmp_path / "logs")
    worker, url = cluster.worker("worker-tls")
    try:
        await wait_ready(url, proc=worker)
        await _processor_round_trip(settings.model_copy(update={"orchestrator_url": url}))
    finally:
        cluster.close()


async def _processor_round_trip(settings: Settings) -> None:
    """One frame put on an SDK processor's topic comes back as a result, all over TLS."""
    redis = settings.redis.client()
    try:
        await redis.set("tls:pixels:0", b"\x07" * 8, ex=600)
    finally:
        await redis.aclose()

    async def size(frame: Frame) -> dict[str, Any]:
        return {"n": len(frame.pixels)}

    client = ProcessorClient(settings, "tls-p", ["x"], size, register_timeout=30)
    task = asyncio.create_task(client.run())
    try:
        # A new group reads from the earliest offset: the frame may go out before the consumer joins.
        await wait_until(lambda: client.record is not None, 30, what="registration")
        now = datetime.now(UTC)
        frame = RoutedFrame(
            frame_id="tls-f0", camera_id="cam", captured_at=now, frame_key="tls:pixels:0",
            processor_id="tls-p", capability="x", routed_at=now,
        )  # fmt: skip
        producer = await start_reliable_producer(
            settings.bootstrap_servers, "tls-frames", security=settings.kafka_security
        )
        try:
            await producer.send_and_wait(client.topic, frame.model_dump_json().encode(), key=b"cam")
        finally:
            await producer.stop()
        await wait_until(lambda: client.stats.processed >= 1, 30, what="the frame to be processed over TLS")
    finally:
        await asyncio.wait_for(client.stop(), timeout=30)
        await asyncio.wait_for(task, timeout=10)
