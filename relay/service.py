"""The relay service: follows the registry and runs one ``Delivery`` per processor with a queue.

It reads the workers' registry changelog (compacted, so it holds every registered processor
however long ago it registered, unlike the control topic, whose old events expire) from its
start on every start, without a group of its own. A processor whose record names a ``queue``
gets a delivery; one that re-registers without it or deregisters loses it. Deliveries of
several relays share each processor's consumer group, so relays can run side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client import start_http_server

from core.metrics import export_build_info, register_v1_aliases
from core.process import ProcessConfig
from frame_buffer_sdk.kafka import ensure_topics, start_reliable_producer
from frame_buffer_sdk.logs import setup_logging
from frame_buffer_sdk.offsets import subscribe_from_first
from frame_buffer_sdk.shutdown import stop_on_signals
from relay.config import RelayConfig
from relay.delivery import Delivery
from relay.queues import Queue, processor_key, queue_of, registry_changelog

log = logging.getLogger(__name__)

DEAD_LETTER_PARTITIONS = 1  # as the bridge declares it
POLL_MS = 250
TOPIC_WAIT_SECONDS = 0.5
MAX_RESTART_SECONDS = 30.0


class Relay:
    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        self.redis = config.redis.client()
        self.queues: dict[str, Queue] = {}
        self.deliveries: dict[str, tuple[Delivery, asyncio.Task[None]]] = {}
        self._restarts: dict[str, tuple[float, float]] = {}  # processor id -> (not before, next backoff)
        self._producer: AIOKafkaProducer | None = None
        self._stop = asyncio.Event()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def request_stop(self) -> None:
        """Stop following and let every delivery finish its batch. Safe from a signal handler."""
        self._stop.set()

    async def serve(self) -> None:
        """Until request_stop(): follow the registry, start and stop deliveries."""
        s = self.config
        security = s.kafka_security
        await ensure_topics(
            s.bootstrap_servers,
            [(s.dead_letter_topic, DEAD_LETTER_PARTITIONS)],
            s.topic_replication_factor,
            security=security,
        )
        self._producer = await start_reliable_producer(s.bootstrap_servers, "relay", security=security)
        registry = AIOKafkaConsumer(
            **security.client_kwargs(),
            bootstrap_servers=s.bootstrap_servers,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await registry.start()
        try:
            # The workers create the changelog (compacted) on their first start: wait, never create it.
            topic = registry_changelog(s.app_id)
            while topic not in await registry.topics():
                if self._stop.is_set():
                    return
                await asyncio.sleep(TOPIC_WAIT_SECONDS)
            # From its first record, not the broker's earliest offset (frame_buffer_sdk.offsets).
            while True:
                try:
                    await subscribe_from_first(registry, topic, within=TOPIC_WAIT_SECONDS)
                    break
                except TimeoutError:  # the broker is slow to answer the metadata: ask again
                    if self._stop.is_set():
                        return
            log.info("relay: following %s", topic)
            while not self._stop.is_set():
                batch = await registry.getmany(timeout_ms=POLL_MS)
                for records in batch.values():
                    for record in records:
                        await self._follow(processor_key(record.key), queue_of(record.value))
                self._reap()
        finally:
            await registry.stop()
            await self._stop_all()

    async def close(self) -> None:
        self.request_stop()
        await self._stop_all()
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        await self.redis.aclose()

    async def _follow(self, processor_id: str, new: Queue | None) -> None:
        old = self.queues.get(processor_id)
        if new == old:
            return
        await self._stop_delivery(processor_id)
        if new is None:
            self.queues.pop(processor_id, None)
            log.info("relay: %s reads no Redis stream (any more)", processor_id)
            return
        self.queues[processor_id] = new
        self._start(new)

    def _start(self, queue: Queue) -> None:
        assert self._producer is not None
        delivery = Delivery(self.config, queue, self.redis, self._producer)
        task = asyncio.create_task(delivery.run(), name=f"relay-{queue.processor_id}")
        self.deliveries[queue.processor_id] = (delivery, task)

    def _reap(self) -> None:
        """A delivery that failed is started again, after a growing pause: what it had not
        committed is delivered again."""
        now = time.monotonic()
        for pid, (delivery, task) in list(self.deliveries.items()):
            if not task.done() or delivery.stop.is_set():
                continue
            not_before, backoff = self._restarts.get(pid, (0.0, 1.0))
            if now < not_before:
                continue
            error = task.exception() if not task.cancelled() else None
            log.warning("relay: delivery to %s ended (%r); restarting", pid, error)
            self._restarts[pid] = (now + backoff, min(backoff * 2, MAX_RESTART_SECONDS))
            self._start(self.queues[pid])

    async def _stop_delivery(self, processor_id: str) -> None:
        entry = self.deliveries.pop(processor_id, None)
        if entry is None:
            return
        delivery, task = entry
        delivery.stop.set()
        with contextlib.suppress(Exception):
            await task

    async def _stop_all(self) -> None:
        for pid in list(self.deliveries):
            await self._stop_delivery(pid)


def run_relay(config: RelayConfig, process: ProcessConfig) -> None:
    """The relay process: serve until SIGTERM/SIGINT, finish the batches in flight, exit."""
    setup_logging(process.log_level)
    serve_metrics(process)
    asyncio.run(_serve_until_signalled(config, process.shutdown_grace_seconds))


async def _serve_until_signalled(config: RelayConfig, grace_seconds: float) -> None:
    relay = Relay(config)
    try:
        with stop_on_signals(relay.request_stop, "relay", grace_seconds):
            await relay.serve()
    finally:
        await relay.close()


def serve_metrics(process: ProcessConfig) -> None:
    """/metrics of the relay on RELAY_METRICS_PORT (0: none), as the bridge serves its own."""
    if not process.metrics_port:
        return
    export_build_info("relay")
    if process.metrics_v1_aliases:
        register_v1_aliases()
    start_http_server(process.metrics_port, addr=process.metrics_host)
    log.info("relay: serving /metrics on %s:%d", process.metrics_host, process.metrics_port)
