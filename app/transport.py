"""Faust's aiokafka transport with a configurable fetch wait and no prefetch stall.

Faust's own drain (``Consumer._drain_messages``) is kept as it is. A copy that handed records
to the streams directly when nothing could wait was faster at 5,000 frames/s, but with acks
gated on count snapshots it lost frames across a rebalance (a worker SIGKILLed mid-stream:
the survivor skipped records of the partitions it took over), so it was withdrawn.

Faust builds its consumer with fetch_max_wait_ms=1500 and no setting to change it. Apache
Kafka answers a fetch as soon as data arrives, so there it only bounds idle polling; a
broker that holds every fetch for the full wait (the embedded Tansu does) adds up to that
wait to every hop. CONSUMER_FETCH_MAX_WAIT_MS sets it.

aiokafka sends no fetch to a broker while any partition it leads has records fetched but not
yet consumed, for up to ``prefetch_backoff`` (0.1 s). Faust "pauses" the changelog partitions
of its own tables after recovery only in its own bookkeeping: aiokafka still fetches them, and
their records are never consumed. So each new record the worker wrote to a table (the dedupe
index, affinity, held frames) froze the fetch of every other partition on that broker for
100 ms: the p99 of 120 ms at 100 frames/s, against a p50 of 28. Without the backoff a
partition with unconsumed records is still skipped, but the others are fetched at once.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types.auth import CredentialsT

from frame_buffer_sdk.kafka_security import KafkaSecurity

#: aiokafka's Fetcher(prefetch_backoff=0.1), which AIOKafkaConsumer does not expose.
PREFETCH_BACKOFF_SECONDS = 0.0


class _FetchWaitConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    fetch_max_wait_ms = 1500

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Read by aiokafka when the consumer starts and builds its fetcher.
        consumer._fetch_max_wait_ms = self.fetch_max_wait_ms
        return consumer

    async def on_start(self) -> None:
        await super().on_start()
        # The fetcher exists once the consumer started; each fetch result reads the value anew.
        self._ensure_consumer()._fetcher._prefetch_backoff = PREFETCH_BACKOFF_SECONDS


def app_with_fetch_wait(fetch_max_wait_ms: int) -> type[faust.App]:
    """A faust.App class whose worker consumer waits at most ``fetch_max_wait_ms`` per fetch."""

    class Thread(_FetchWaitConsumerThread):
        pass

    Thread.fetch_max_wait_ms = fetch_max_wait_ms

    class FetchWaitConsumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
            return Thread(self, loop=self.loop, beacon=self.beacon)

    class Transport(faust_aiokafka.Transport):
        Consumer = FetchWaitConsumer

    class App(faust.App):
        def _new_transport(self) -> Any:
            return Transport(self.conf.broker_consumer, self)

    return App


def faust_credentials(security: KafkaSecurity) -> CredentialsT | None:
    """The Faust app's ``broker_credentials``; None on PLAINTEXT (Faust's default)."""
    if security.uses_sasl:
        return faust.SASLCredentials(
            username=security.username,
            password=security.password.get_secret_value() if security.password else None,
            ssl_context=security.ssl_context(),
            mechanism=security.sasl_mechanism,
        )
    if security.uses_tls:
        context = security.ssl_context()
        assert context is not None
        return faust.SSLCredentials(context)
    return None
