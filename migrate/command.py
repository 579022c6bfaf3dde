"""One migration run: snapshot, plan, carry out (unless a dry run), report."""

from __future__ import annotations

from core.settings import Settings
from frame_buffer_sdk.kafka import ensure_topics, start_reliable_producer
from migrate.apply import apply_redis, convert_dead_letters, finish, register_processors
from migrate.plan import plan, report
from migrate.state import read_snapshot
from migrate.v1 import V1Names

# As the bridge and the workers declare them.
DEAD_LETTER_PARTITIONS = 1
CONTROL_PARTITIONS = 1


async def migrate_from_v1(settings: Settings, names: V1Names, *, dry_run: bool) -> str:
    """Migrate (or, with ``dry_run``, only say what a migration would do); return the report."""
    redis = settings.redis.client(decode_responses=True, encoding_errors="backslashreplace")
    try:
        snap = await read_snapshot(
            redis, app_id=settings.app_id, stream=settings.capture_stream, group=settings.capture_group, names=names
        )
        p = plan(snap)
        text = report(p, snap, dry_run)
        if dry_run or p.already_done is not None:
            return text
        await apply_redis(p, snap, redis, settings.app_id)
        topics = [(settings.dead_letter_topic, DEAD_LETTER_PARTITIONS), (settings.control_topic, CONTROL_PARTITIONS)]
        topics += [
            (settings.ready_topic(spec.id), spec.partitions or settings.processor_partitions) for spec in p.processors
        ]
        security = settings.kafka_security
        await ensure_topics(settings.bootstrap_servers, topics, settings.topic_replication_factor, security=security)
        producer = await start_reliable_producer(settings.bootstrap_servers, "migrate-from-v1", security=security)
        try:
            await convert_dead_letters(p, settings, producer, redis)
            await register_processors(p, settings, producer, redis)
        finally:
            await producer.stop()
        await finish(redis, settings.app_id, text)
        return text
    finally:
        await redis.aclose()
