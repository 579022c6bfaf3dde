"""The relay service: follows the control topic and runs one ``Delivery`` per processor with a queue.

The control topic is read from its start on every start (no group of its own), folded with
``fold_queue``: a processor that registers with ``queue`` gets a delivery, one that
re-registers without it or deregisters loses it. Deliveries of several relays share each
processor's consumer group, so relays can run side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pydantic import ValidationError

from app.kafka import ensure_topics, start_reliable_producer
from app.logs import setup_logging
from app.models import ControlEvent
from app.settings import Settings
from relay.delivery import Delivery
from relay.queues import Queue, fold_queue

log = logging.getLogger(__name__)

CONTROL_PARTITIONS = 1  # as the workers declare it
DEAD_LETTER_PARTITIONS = 1
POLL_MS = 250


class Relay:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis = aioredis.from_url(settings.redis_url)
        self.queues: dict[str, Queue] = {}
        self.deliveries: dict[str, tuple[Delivery, asyncio.Task[None]]] = {}
        self._producer: AIOKafkaProducer | None = None
        self._stop = asyncio.Event()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def request_stop(self) -> None:
        """Stop following and let every delivery finish its batch. Safe from a signal handler."""
        self._stop.set()

    async def serve(self) -> None:
        """Until request_stop(): follow the control topic, start and stop deliveries."""
        s = self.settings
        await ensure_topics(
            s.bootstrap_servers,
            [(s.control_topic, CONTROL_PARTITIONS), (s.dead_letter_topic, DEAD_LETTER_PARTITIONS)],
            s.topic_replication_factor,
        )
        self._producer = await start_reliable_producer(s.bootstrap_servers, "relay")
        control = AIOKafkaConsumer(
            bootstrap_servers=s.bootstrap_servers, group_id=None, auto_offset_reset="earliest", enable_auto_commit=False
        )
        await control.start()
        try:
            control.subscribe([s.control_topic])
            while not self._stop.is_set():
                batch = await control.getmany(timeout_ms=POLL_MS)
                for records in batch.values():
                    for record in records:
                        await self._fold(record.value or b"")
                self._reap()
        finally:
            await control.stop()
            await self._stop_all()

    async def close(self) -> None:
        self.request_stop()
        await self._stop_all()
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        await self.redis.aclose()

    async def _fold(self, value: bytes) -> None:
        try:
            event = ControlEvent.model_validate_json(value)
        except ValidationError:
            return  # the workers dead-letter what is no control event; nothing to deliver here
        old = self.queues.get(event.processor_id)
        new = fold_queue(old, event)
        if new == old:
            return
        await self._stop_delivery(event.processor_id)
        if new is None:
            self.queues.pop(event.processor_id, None)
            log.info("relay: %s no longer reads a Redis stream", event.processor_id)
            return
        self.queues[new.processor_id] = new
        assert self._producer is not None
        delivery = Delivery(self.settings, new, self.redis, self._producer)
        task = asyncio.create_task(delivery.run(), name=f"relay-{new.processor_id}")
        self.deliveries[new.processor_id] = (delivery, task)

    def _reap(self) -> None:
        """A delivery that failed is started again: what it had not committed is delivered again."""
        for pid, (delivery, task) in list(self.deliveries.items()):
            if task.done() and not delivery.stop.is_set():
                error = task.exception() if not task.cancelled() else None
                log.warning("relay: delivery to %s ended (%r); restarting", pid, error)
                self.deliveries[pid] = (delivery, asyncio.create_task(delivery.run(), name=f"relay-{pid}"))

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


def run_relay(settings: Settings) -> None:
    """The relay process: serve until SIGTERM/SIGINT, finish the batches in flight, exit."""
    setup_logging(settings.log_level)
    asyncio.run(_serve_until_signalled(settings))


async def _serve_until_signalled(settings: Settings) -> None:
    relay = Relay(settings)
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()

    def on_signal(signum: int) -> None:
        if relay.stopping and main is not None:
            main.cancel()
            return
        log.info("%s: finishing the batches in flight", signal.Signals(signum).name)
        relay.request_stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await relay.serve()
    finally:
        await relay.close()
