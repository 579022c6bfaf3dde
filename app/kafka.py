"""Kafka plumbing shared by the bridge, the router and the SDK: producers and topic creation."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

log = logging.getLogger(__name__)


def reliable_producer(bootstrap_servers: str, client_id: str, linger_ms: int = 5) -> AIOKafkaProducer:
    """acks=all and idempotence: a record acknowledged is a record kept, and retries do not duplicate."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=linger_ms,
        max_batch_size=1 << 20,
        request_timeout_ms=30_000,
    )


async def ensure_topics(bootstrap_servers: str, topics: Iterable[tuple[str, int]], replication_factor: int = 1) -> None:
    """Create topics that are missing; existing ones are left as they are."""
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
            admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=15_000)
            await admin.start()
            try:
                existing = set(await admin.list_topics())
                missing = [
                    NewTopic(name=name, num_partitions=parts, replication_factor=replication_factor)
                    for name, parts in wanted
                    if name not in existing
                ]
                if missing:
                    try:
                        await admin.create_topics(missing)
                    except TopicAlreadyExistsError:
                        pass  # a concurrent creator won the race; the topic is there either way
                    log.info("created topics %s", [t.name for t in missing])
            finally:
                await admin.close()
    # Metadata of a new topic reaches every broker a moment later.
    await asyncio.sleep(0)
