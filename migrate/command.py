"""One migration run: snapshot, plan, carry out (unless a dry run), report."""

from __future__ import annotations

from frame_buffer_sdk.kafka import ensure_topics, start_reliable_producer
from migrate.apply import apply_redis, convert_dead_letters, finish, register_processors
from migrate.config import MigrateConfig
from migrate.plan import plan, report
from migrate.state import read_snapshot
from migrate.v1 import V1Names

# As the bridge and the workers declare them.
DEAD_LETTER_PARTITIONS = 1
CONTROL_PARTITIONS = 1


async def migrate_from_v1(config: MigrateConfig, names: V1Names, *, dry_run: bool) -> str:
    """Migrate (or, with ``dry_run``, only say what a migration would do); return the report."""
    redis = config.redis.client(decode_responses=True, encoding_errors="backslashreplace")
    try:
        snap = await read_snapshot(
            redis, app_id=config.app_id, stream=config.capture_stream, group=config.capture_group, names=names
        )
        p = plan(snap)
        text = report(p, snap, dry_run)
        if dry_run or p.already_done is not None:
            return text
        await apply_redis(p, snap, redis, config.app_id)
        topics = [(config.dead_letter_topic, DEAD_LETTER_PARTITIONS), (config.control_topic, CONTROL_PARTITIONS)]
        topics += [
            (config.names.ready_topic(spec.id), spec.partitions or config.processor_partitions) for spec in p.processors
        ]
        security = config.kafka_security
        await ensure_topics(config.bootstrap_servers, topics, config.topic_replication_factor, security=security)
        producer = await start_reliable_producer(config.bootstrap_servers, "migrate-from-v1", security=security)
        try:
            await convert_dead_letters(p, config, producer, redis)
            await register_processors(p, config, producer, redis)
        finally:
            await producer.stop()
        await finish(redis, config.app_id, text)
        return text
    finally:
        await redis.aclose()
