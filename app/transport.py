"""Faust's aiokafka transport with a configurable fetch wait and a faster drain (app/fast_drain.py).

Faust builds its consumer with fetch_max_wait_ms=1500 and no setting to change it. Apache
Kafka answers a fetch as soon as data arrives, so there it only bounds idle polling; a
broker that holds every fetch for the full wait (the embedded Tansu does) adds up to that
wait to every hop. CONSUMER_FETCH_MAX_WAIT_MS sets it.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types.auth import CredentialsT

from app.fast_drain import FastDrainMixin
from frame_buffer_sdk.kafka_security import KafkaSecurity


class _FetchWaitConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    fetch_max_wait_ms = 1500

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Read by aiokafka when the consumer starts and builds its fetcher.
        consumer._fetch_max_wait_ms = self.fetch_max_wait_ms
        return consumer


def app_with_fetch_wait(fetch_max_wait_ms: int) -> type[faust.App]:
    """A faust.App class whose worker consumer waits at most ``fetch_max_wait_ms`` per fetch."""

    class Thread(_FetchWaitConsumerThread):
        pass

    Thread.fetch_max_wait_ms = fetch_max_wait_ms

    class FetchWaitConsumer(FastDrainMixin, faust_aiokafka.Consumer):
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
