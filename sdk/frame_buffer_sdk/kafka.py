"""Kafka plumbing shared by the bridge, the router and the SDK: producers and topic creation."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CorruptRecordException,
    InvalidTimestampError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    TopicAlreadyExistsError,
    UnsupportedForMessageFormatError,
    for_code,
)
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from frame_buffer_sdk.kafka_security import PLAINTEXT, KafkaSecurity

log = logging.getLogger(__name__)

_VISIBLE_POLLS = 100
_VISIBLE_POLL_SECONDS = 0.1

# Refusals of the record itself: sending the same bytes again gets the same answer. Anything
# else (timeouts, leaders moving, a broker down, authorization) is the server's state and is retried.
SIZE_REFUSALS: tuple[type[BaseException], ...] = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
RECORD_REFUSALS: tuple[type[BaseException], ...] = (
    *SIZE_REFUSALS,
    CorruptRecordException,
    InvalidTimestampError,
    UnsupportedForMessageFormatError,
)


def refused_for_good(error: BaseException) -> bool:
    """True when Kafka will never take this record, however often it is sent."""
    return isinstance(error, RECORD_REFUSALS)


def refused_for_size(error: BaseException) -> bool:
    """True when Kafka refused the record (or the batch it was in) as too large: the producer's
    max_request_size, or the broker's max.message.bytes of the topic."""
    return isinstance(error, SIZE_REFUSALS)


def reliable_producer(
    bootstrap_servers: str,
    client_id: str,
    linger_ms: int = 5,
    idempotent: bool = True,
    *,
    security: KafkaSecurity = PLAINTEXT,
) -> AIOKafkaProducer:
    """acks=all and idempotence: a record acknowledged is a record kept, and retries do not duplicate."""
    return AIOKafkaProducer(
        **security.client_kwargs(),
        bootstrap_servers=bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=idempotent,
        linger_ms=linger_ms,
        max_batch_size=1 << 20,
        request_timeout_ms=30_000,
    )


async def start_reliable_producer(
    bootstrap_servers: str, client_id: str, linger_ms: int = 5, *, security: KafkaSecurity = PLAINTEXT
) -> AIOKafkaProducer:
    """A started reliable producer, idempotent where the broker grants producer ids.

    Some Kafka-compatible brokers (the embedded Tansu among them) answer InitProducerId with an
    error; there the producer keeps acks=all without idempotence. Order per partition still holds
    (aiokafka keeps one batch in flight per partition); a retried batch may be duplicated, which
    at-least-once delivery allows anyway. Connection failures are raised for the caller to retry.
    """
    producer = reliable_producer(bootstrap_servers, client_id, linger_ms, security=security)
    try:
        await producer.start()
        return producer
    except KafkaConnectionError:
        await producer.stop()
        raise
    except KafkaError as exc:
        await producer.stop()
        log.warning("broker refused an idempotent producer (%r); %s uses acks=all without idempotence", exc, client_id)
    producer = reliable_producer(bootstrap_servers, client_id, linger_ms, idempotent=False, security=security)
    try:
        await producer.start()
    except BaseException:
        await producer.stop()
        raise
    return producer


async def ensure_topics(
    bootstrap_servers: str,
    topics: Iterable[tuple[str, int]],
    replication_factor: int = 1,
    *,
    security: KafkaSecurity = PLAINTEXT,
) -> None:
    """Create topics that are missing; existing ones are left as they are.

    CreateTopics reports failures per topic in its response instead of raising, so each
    topic's error code is checked: "already exists" means a concurrent creator won the race,
    anything else is raised.
    """
    wanted = list(topics)
    if not wanted:
        return
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type((KafkaConnectionError, OSError)),
        wait=wait_exponential(min=0.2, max=3),
        stop=stop_after_delay(30),
        reraise=True,
    ):
        with attempt:
            admin = AIOKafkaAdminClient(
                **security.client_kwargs(), bootstrap_servers=bootstrap_servers, request_timeout_ms=15_000
            )
            await admin.start()
            try:
                existing = set(await admin.list_topics())
                missing = [
                    NewTopic(name=name, num_partitions=parts, replication_factor=replication_factor)
                    for name, parts in wanted
                    if name not in existing
                ]
                if missing:
                    response = await admin.create_topics(missing)
                    created = _check_created(response.to_object())
                    if created:
                        log.info("created topics %s", created)
                    await _wait_visible(admin, {t.name for t in missing})
            finally:
                await admin.close()


def _check_created(response: dict[str, Any]) -> list[str]:
    """Names created by this request; raises the broker's error for any other failure."""
    created: list[str] = []
    for item in response.get("topic_errors", []):
        code = int(item["error_code"])
        if code == 0:
            created.append(item["topic"])
        elif code != TopicAlreadyExistsError.errno:
            error = for_code(code)
            raise error(f"creating topic {item['topic']!r}: {item.get('error_message') or error.message}")
    return created


async def _wait_visible(admin: AIOKafkaAdminClient, names: set[str]) -> None:
    """A created topic reaches the metadata of every broker a moment later; clients need it there."""
    for _ in range(_VISIBLE_POLLS):
        if names <= set(await admin.list_topics()):
            return
        await asyncio.sleep(_VISIBLE_POLL_SECONDS)
    waited = _VISIBLE_POLLS * _VISIBLE_POLL_SECONDS
    raise KafkaTimeoutError(f"topics {sorted(names)} not in the metadata after {waited:.0f} s")
