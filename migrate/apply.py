"""Carrying out a ``Plan``: Redis first, then Kafka, each step recorded in the marker when done.

Each step is safe to repeat after a crash: the group is created and handed v1's pending entries
in one transaction with its marker field; each replayed batch is XADDed and XDELed from the
queue in one transaction; dead letters are recorded as converted (``dlq_through``) after Kafka
acknowledged them, so a crash repeats at most the batch in flight; registering is idempotent.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from frame_buffer_sdk.keys import migration_marker_key
from frame_buffer_sdk.models import ControlEvent, ProcessorStatus, utcnow
from migrate.config import MigrateConfig
from migrate.plan import Plan, Snapshot

# The consumer v1's pending entries are handed to: no bridge reads as it, so every bridge's
# XAUTOCLAIM sweep takes them over at once, as they are marked idle for longer than any
# BRIDGE_CLAIM_IDLE_MS.
HANDOVER_CONSUMER = "migrated-from-v1"
HANDOVER_IDLE_MS = 7 * 24 * 3600 * 1000
BATCH = 500
UNHEALTHY_REASON = "imported from frame-buffer v1: healthy once it heartbeats"


async def apply_redis(p: Plan, snap: Snapshot, redis: Redis, app_id: str) -> None:
    key = migration_marker_key(app_id)
    if p.group is not None:
        async with redis.pipeline(transaction=True) as tx:
            tx.xgroup_create(snap.stream, snap.group, id=p.group.start_id, mkstream=True)
            for start in range(0, len(p.group.handover), BATCH):
                tx.xclaim(
                    snap.stream,
                    snap.group,
                    HANDOVER_CONSUMER,
                    min_idle_time=0,
                    message_ids=list(p.group.handover[start : start + BATCH]),
                    idle=HANDOVER_IDLE_MS,
                    force=True,
                    justid=True,
                )
            tx.hset(key, "group_done", "1")
            await tx.execute()
    for start in range(0, len(p.replays), BATCH):
        chunk = p.replays[start : start + BATCH]
        async with redis.pipeline(transaction=True) as tx:
            for _, fields in chunk:
                tx.xadd(snap.stream, fields)  # type: ignore[arg-type]
            tx.xdel(snap.names.queue, *(sid for sid, _ in chunk))
            await tx.execute()


async def convert_dead_letters(p: Plan, config: MigrateConfig, producer: AIOKafkaProducer, redis: Redis) -> None:
    key = migration_marker_key(config.app_id)
    for start in range(0, len(p.dead_letters), BATCH):
        chunk = p.dead_letters[start : start + BATCH]
        futures = [
            await producer.send(
                config.dead_letter_topic,
                value=letter.model_dump_json().encode(),
                key=(letter.frame_id or letter.camera_id or "").encode(),
            )
            for letter in chunk
        ]
        await asyncio.gather(*futures)
        await redis.hset(key, "dlq_through", chunk[-1].stream_id or "")  # type: ignore[misc]


async def register_processors(p: Plan, config: MigrateConfig, producer: AIOKafkaProducer, redis: Redis) -> None:
    # As if it registered over REST, but with its last heartbeat long gone: the health monitor
    # sees it unhealthy at once, and only heartbeats from the processor itself bring it back.
    stale = utcnow() - timedelta(seconds=config.heartbeat_interval * config.heartbeat_misses + 1)
    futures = []
    for spec in p.processors:
        # One event: a register then a status would show it healthy in between.
        event = ControlEvent(
            kind="register",
            processor_id=spec.id,
            spec=spec,
            at=stale,
            status=ProcessorStatus.UNHEALTHY,
            reason=UNHEALTHY_REASON,
        )
        futures.append(
            await producer.send(config.control_topic, key=spec.id.encode(), value=event.model_dump_json().encode())
        )
    await asyncio.gather(*futures)
    await redis.hset(migration_marker_key(config.app_id), "registry_done", "1")  # type: ignore[misc]


async def finish(redis: Redis, app_id: str, report_text: str) -> None:
    await redis.hset(  # type: ignore[misc]
        migration_marker_key(app_id), mapping={"finished_at": utcnow().isoformat(), "report": report_text}
    )
