"""Migrating from frame-buffer v1 on real servers: v1's state in, the real bridge after, everything counted."""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiokafka.admin import AIOKafkaAdminClient
from click.testing import CliRunner

import migrate.apply
import migrate.command
import migrate.state
from app.cli import main
from app.configs import bridge_config, migrate_config
from bridge.service import Bridge
from core.settings import Settings
from devtools.processes import settings_env
from frame_buffer_sdk.keys import migration_marker_key
from migrate.command import migrate_from_v1
from migrate.plan import Plan
from migrate.v1 import V1Names
from tests.detektr import capture_entry
from tests.integration.cluster import Cluster, http_json, wait_ready
from tests.integration.cluster import wait_until as cluster_wait
from tests.integration.test_bridge import read_frames, read_topic, wait_until
from tests.unit.test_migrate_v1 import v1_registry_value

pytestmark = pytest.mark.integration

V1_CONSUMER = "frame-buffer-1"


async def build_v1_state(redis: aioredis.Redis, settings: Settings, names: V1Names) -> dict[str, Any]:
    """v1 as it is left when stopped: a group that acked some of what it read, a queue, dead letters, a registry."""
    stream = settings.capture_stream
    ids, frame_of = [], {}
    for n in range(20):
        fid, fields = capture_entry(f"cam_{n % 2}", n, source_url="rtsp://u:pw@cam/1", captured=1772366400.0 + n)
        sid = await redis.xadd(stream, fields)  # type: ignore[arg-type]
        ids.append(sid)
        frame_of[sid] = fid
    await redis.xgroup_create(stream, names.group, id="0")
    await redis.xreadgroup(names.group, V1_CONSUMER, {stream: ">"}, count=12)  # v1 read e0..e11
    acked = [ids[i] for i in (0, 1, 2, 3, 4, 6, 8, 9)]  # interleaved with the pending 5, 7, 10, 11
    await redis.xack(stream, names.group, *acked)
    await redis.xdel(stream, ids[11])  # pending in v1, then trimmed: gone for good
    unacked = [frame_of[ids[i]] for i in (5, 7, 10, *range(12, 20))]

    queued = []
    for n in range(5):
        frame = {"frame_id": f"q-{n}", "camera_id": "cam_q", "timestamp": f"2026-03-01T12:00:0{n}", "width": 4}
        await redis.xadd(names.queue, {"frame_data": json.dumps(frame)})
        queued.append(frame["frame_id"])
    await redis.xadd(names.queue, {"frame_data": "{oops"})  # replayed, then dead-lettered by the bridge

    dlq_ids = []
    for n in range(3):
        frame = {"frame_id": f"d-{n}", "camera_id": "cam_d", "source_url": "rtsp://u:pw@cam/1", "roi": (1, 2)}
        dlq_ids.append(await redis.xadd(names.dlq, {"frame": str(frame), "reason": "buffer_full"}))
    dlq_ids.append(await redis.xadd(names.dlq, {"frame": "{'at': datetime.now()}", "reason": "buffer_full"}))

    await redis.hset(
        names.registry,
        mapping={"yolo-1": v1_registry_value("yolo-1"), "faces-1": v1_registry_value("faces-1"), "bad": "{"},
    )
    return {"unacked": unacked, "queued": queued, "dlq_ids": dlq_ids, "gone": ids[11], "last": ids[11]}


async def redis_state(redis: aioredis.Redis, settings: Settings, names: V1Names) -> Any:
    groups = await redis.xinfo_groups(settings.capture_stream)
    return (
        sorted((g["name"], g["last-delivered-id"], g["pending"]) for g in groups),
        await redis.xlen(settings.capture_stream),
        await redis.xrange(names.queue),
        await redis.xlen(names.dlq),
        await redis.hgetall(migration_marker_key(settings.app_id)),
    )


async def topics_of(settings: Settings) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


@pytest.mark.parametrize("page", [1000, 2], ids=["one-page", "paged"])
async def test_migration_from_v1_loses_nothing_repeats_nothing_and_runs_once(
    make_settings: Callable[..., Settings], unique: str, page: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small pages and batches make every read and write of the migration take several rounds.
    monkeypatch.setattr(migrate.state, "PAGE", page)
    monkeypatch.setattr(migrate.apply, "BATCH", max(1, page // 2))
    settings = make_settings(bridge_block_ms=100)
    names = V1Names(group=f"v1-{unique}", queue=f"fq-{unique}", dlq=f"dlq-{unique}", registry=f"reg-{unique}")
    redis = aioredis.from_url(settings.redis_url, decode_responses=True)
    try:
        v1 = await build_v1_state(redis, settings, names)

        before = await redis_state(redis, settings, names)
        dry = await migrate_from_v1(migrate_config(settings), names, dry_run=True)
        assert await redis_state(redis, settings, names) == before
        assert not {settings.dead_letter_topic, settings.control_topic} & await topics_of(settings)

        real = await migrate_from_v1(migrate_config(settings), names, dry_run=False)
        # The same report, but for the tense and the age of v1's last read (time passes between the two).
        assert _ageless(dry.replace("would be ", "").replace(" (dry run: nothing changed)", "")) == _ageless(real)
        assert (
            "reading after " + v1["last"] + "; 3 entries v1 read but never acknowledged would be handed" in dry
            and "(dry run: nothing changed)" in dry
        )
        assert "6 frames replayed" in real and "4 dead letters converted (1 unparseable" in real
        assert "2 processors registered" in real
        assert f"skipped v1 pending entry {v1['gone']}" in real and "skipped processor 'bad'" in real
        assert "if v1 still runs" in real  # its consumer read a moment ago
        assert await redis.xlen(names.queue) == 0

        after = await redis_state(redis, settings, names)
        again = await migrate_from_v1(migrate_config(settings), names, dry_run=False)
        assert "nothing to do" in again
        assert await redis_state(redis, settings, names) == after
    finally:
        await redis.aclose()

    bridge = Bridge(bridge_config(settings), consumer="after-v1")
    serving = asyncio.create_task(bridge.serve())
    expected = len(v1["unacked"]) + len(v1["queued"])
    try:
        await wait_until(
            lambda: bridge.mirrored_total >= expected and bridge.dead_lettered_total >= 1, 60, "the backlog"
        )
        await asyncio.sleep(1.0)  # anything extra would show up now
    finally:
        await bridge.close()
        await serving
    assert (bridge.mirrored_total, bridge.dead_lettered_total) == (expected, 1)

    captured = await read_frames(settings, lambda rs: len(rs) >= expected)
    counts = Counter(json.loads(r.value)["frame_id"] for r in captured)
    assert set(counts) == set(v1["unacked"]) | set(v1["queued"])
    assert max(counts.values()) == 1

    dead = await read_topic(settings, settings.dead_letter_topic, lambda rs: len(rs) >= 5)
    letters = [json.loads(r.value) for r in dead if r.value is not None]
    converted = [letter for letter in letters if letter["reason"] == "v1:buffer_full"]
    assert sorted(letter["stream_id"] for letter in converted) == sorted(v1["dlq_ids"])
    assert sorted(str(letter["frame_id"]) for letter in converted) == ["None", "d-0", "d-1", "d-2"]
    assert [letter["reason"] for letter in letters if letter not in converted] == ["invalid_json"]
    assert all("pw@" not in json.dumps(letter) for letter in letters)

    control = await read_topic(settings, settings.control_topic, lambda rs: len(rs) >= 2)
    events = [json.loads(r.value) for r in control if r.value is not None]
    # One register each, unhealthy in itself: no reader sees an import healthy before it heartbeats.
    assert sorted((e["processor_id"], e["kind"], e["status"]) for e in events) == [
        ("faces-1", "register", "unhealthy"),
        ("yolo-1", "register", "unhealthy"),
    ]


def test_the_command_line_runs_it_once(make_settings: Callable[..., Settings], unique: str) -> None:
    settings = make_settings()
    args = ["migrate", "--from-v1", "--v1-group", f"v1-{unique}", "--v1-queue", f"fq-{unique}"]
    args += ["--v1-dlq", f"dlq-{unique}", "--v1-registry", f"reg-{unique}"]
    env = settings_env(settings)
    dry = CliRunner().invoke(main, [*args, "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert "dry run: nothing changed" in dry.output and "0 frames would be replayed" in dry.output
    first = CliRunner().invoke(main, args, env=env)
    assert first.exit_code == 0, first.output
    assert "0 frames replayed" in first.output and "reads the stream from its start" in first.output
    second = CliRunner().invoke(main, args, env=env)
    assert second.exit_code == 0 and "nothing to do" in second.output


async def test_imported_processors_are_healthy_only_once_they_heartbeat(
    make_settings: Callable[..., Settings], unique: str, tmp_path: Path
) -> None:
    settings = make_settings(heartbeat_interval=1.0)
    names = V1Names(group=f"v1-{unique}", queue=f"fq-{unique}", dlq=f"dlq-{unique}", registry=f"reg-{unique}")
    redis = aioredis.from_url(settings.redis_url, decode_responses=True)
    try:
        await redis.hset(names.registry, "yolo-1", v1_registry_value("yolo-1"))
    finally:
        await redis.aclose()
    assert "1 processors registered" in await migrate_from_v1(migrate_config(settings), names, dry_run=False)

    cluster = Cluster(settings, tmp_path / "logs")
    worker, url = cluster.worker("worker-1")
    try:
        await wait_ready(url, proc=worker)

        async def status() -> Any:
            code, body = await http_json("GET", f"{url}/api/v1/processors/yolo-1")
            return body if code == 200 else None

        imported = await cluster_wait(status, 30, what="the imported processor")
        assert imported["status"] == "unhealthy" and imported["queue"] == "frames:ready:yolo-1"
        await asyncio.sleep(3.0)
        assert (await status())["status"] == "unhealthy"  # no heartbeat, no health

        async def healthy_after_heartbeat() -> bool:
            await http_json(
                "POST", f"{url}/api/v1/processors/heartbeat", {"processor_id": "yolo-1", "status": "healthy"}
            )
            return (await status())["status"] == "healthy"

        await cluster_wait(healthy_after_heartbeat, 60, interval=1.0, what="health after heartbeats")
    finally:
        cluster.close()


async def test_an_interrupted_migration_resumes_without_repeating(
    make_settings: Callable[..., Settings], unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(bridge_block_ms=100)
    names = V1Names(group=f"v1-{unique}", queue=f"fq-{unique}", dlq=f"dlq-{unique}", registry=f"reg-{unique}")
    redis = aioredis.from_url(settings.redis_url, decode_responses=True)
    try:
        v1 = await build_v1_state(redis, settings, names)
    finally:
        await redis.aclose()

    real_convert = migrate.command.convert_dead_letters

    async def crash_after_two_letters(p: Plan, *args: Any) -> None:
        await real_convert(replace(p, dead_letters=p.dead_letters[:2]), *args)
        raise RuntimeError("killed mid-migration")

    monkeypatch.setattr(migrate.command, "convert_dead_letters", crash_after_two_letters)
    with pytest.raises(RuntimeError, match="killed"):
        await migrate_from_v1(migrate_config(settings), names, dry_run=False)
    monkeypatch.setattr(migrate.command, "convert_dead_letters", real_convert)

    resumed = await migrate_from_v1(migrate_config(settings), names, dry_run=False)
    assert "positioned by an earlier, interrupted run" in resumed
    assert "0 frames replayed" in resumed and "2 dead letters converted" in resumed
    assert "2 processors registered" in resumed
    assert "nothing to do" in await migrate_from_v1(migrate_config(settings), names, dry_run=False)

    dead = await read_topic(settings, settings.dead_letter_topic, lambda rs: len(rs) >= 4)
    converted = Counter(json.loads(r.value)["stream_id"] for r in dead if r.value is not None)
    assert converted == Counter(v1["dlq_ids"])


def _ageless(report: str) -> str:
    return re.sub(r"read [0-9.]+ s ago", "read ? s ago", report)
