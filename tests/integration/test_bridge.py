"""The Redis -> Kafka bridge against real servers: exactly-once accounting, crash recovery, throttling."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import sys
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY
from redis.exceptions import ResponseError

from app.configs import bridge_config
from bridge.service import Bridge
from core import envelope
from core.settings import Settings
from devtools.devstack import free_port
from devtools.processes import ChildProcess, settings_env
from frame_buffer_sdk.keys import backpressure_key, bridge_state_key
from tests.integration.cluster import assign_from_start

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
Fields = dict[str, str | bytes]
Records = list[ConsumerRecord[bytes, bytes]]
MakeSettings = Callable[..., Settings]


# --- helpers -------------------------------------------------------------------------------------


@pytest.fixture
async def redis_of() -> AsyncIterator[Callable[[Settings], aioredis.Redis]]:
    clients: list[aioredis.Redis] = []

    def make(settings: Settings) -> aioredis.Redis:
        client = aioredis.from_url(settings.redis_url)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


async def wait_until(predicate: Callable[[], bool | Awaitable[bool]], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


def valid(camera: str, seq: int, frame_id: str, traceparent: str | None = None) -> Fields:
    fields: Fields = {
        "frame_id": frame_id,
        "camera_id": camera,
        "timestamp": f"{1772366400 + seq / 10:.3f}",
        "sequence": str(seq),
        "width": "4",
        "height": "4",
        "format": "gray8",
        "priority": str(seq % 10),
        "capabilities": "motion",
    }
    if traceparent:
        fields["traceparent"] = traceparent
    return fields


def traceparent_for(n: int) -> str:
    return f"00-{n + 1:032x}-{n + 7:016x}-01"


# One of each defect, with the reason the dead letter must name.
MALFORMED: list[tuple[str, Callable[[int], Fields]]] = [
    ("missing_field", lambda n: {"frame_id": f"bad-{n}", "timestamp": "1772366400"}),
    ("invalid_field", lambda n: {"frame_id": f"bad-{n}", "camera_id": "cam-x", "timestamp": "noon"}),
    ("invalid_json", lambda n: {"payload": '{"frame_id": "bad-' + str(n) + '", "camera_id": '}),
    ("invalid_field", lambda n: {**valid("cam-x", 1, f"bad-{n}"), "width": "-4"}),
    ("invalid_encoding", lambda n: {**valid("cam-x", 1, f"bad-{n}"), "camera_id": b"\xff\xfe"}),
    ("invalid_field", lambda n: {**valid("cam-x", 1, f"bad-{n}"), "capabilities": "no spaces allowed"}),
    ("invalid_json", lambda n: {**valid("cam-x", 1, f"bad-{n}"), "metadata": "{oops"}),
    ("invalid_json", lambda n: {"event": "[]"}),
]


async def xadd_all(redis: aioredis.Redis, stream: str, entries: list[Fields]) -> list[str]:
    ids: list[str] = []
    for start in range(0, len(entries), 1000):
        async with redis.pipeline(transaction=False) as pipe:
            for fields in entries[start : start + 1000]:
                pipe.xadd(stream, fields)  # type: ignore[arg-type]
            ids.extend(i.decode() for i in await pipe.execute())
    return ids


async def read_topic(
    settings: Settings, topic: str, enough: Callable[[Records], bool], max_seconds: float = 60
) -> Records:
    """Every record of the topic from the start: read until ``enough``, then one more idle second for extras."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    records: Records = []
    try:
        deadline = time.monotonic() + max_seconds
        await assign_from_start(consumer, topic, within=max_seconds)
        extra_until: float | None = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300, max_records=5000)
            for part in batch.values():
                records.extend(part)
            if extra_until is None and enough(records):
                extra_until = time.monotonic() + 1.0
            if extra_until is not None and time.monotonic() >= extra_until:
                break
    finally:
        await consumer.stop()
    return records


@dataclass(frozen=True)
class FrameRecord:
    """One frame as the captured topic holds it: a plain record, or one frame of an envelope
    (then its trace context is the frame's own, as the router reads it)."""

    partition: int
    offset: int
    index: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


def frames_of(records: Records) -> list[FrameRecord]:
    out: list[FrameRecord] = []
    for r in records:
        if r.value is None:
            continue
        if not envelope.is_envelope(r.value):
            out.append(FrameRecord(r.partition, r.offset, 0, r.key, r.value, list(r.headers)))
            continue
        assert dict(r.headers)[envelope.CONTENT_TYPE_HEADER] == envelope.ENVELOPE_CONTENT_TYPE
        frames = envelope.split(r.value)
        assert int(dict(r.headers)[envelope.FRAME_COUNT_HEADER]) == len(frames) > 1
        for i, raw in enumerate(frames):
            tp = json.loads(raw).get("traceparent")
            out.append(FrameRecord(r.partition, r.offset, i, r.key, raw, [("traceparent", tp.encode())] if tp else []))
    return out


async def read_frames(settings: Settings, enough: Callable[[list[FrameRecord]], bool]) -> list[FrameRecord]:
    """Every frame of the captured topic, envelopes opened."""
    return frames_of(await read_topic(settings, settings.captured_topic, lambda rs: enough(frames_of(rs))))


async def group_state(redis: aioredis.Redis, settings: Settings) -> tuple[int, int] | None:
    """(lag, pending) of the bridge group; None before a bridge created it."""
    for info in await redis.xinfo_groups(settings.capture_stream):
        if info["name"].decode() == settings.capture_group:
            return int(info["lag"]), int(info["pending"])
    return None


async def pending_of(redis: aioredis.Redis, settings: Settings, consumer: str) -> int:
    try:
        summary = await redis.xpending(settings.capture_stream, settings.capture_group)
    except ResponseError as exc:  # a bridge starting in a subprocess has not created its group yet
        if "NOGROUP" in str(exc):
            return 0
        raise
    return sum(c["pending"] for c in summary["consumers"] if c["name"].decode() == consumer)


def frames_metric(outcome: str) -> float:
    """The bridge's entries by outcome, as the v1 name frame_buffer_bridge_frames_total split them."""
    if outcome == "mirrored":
        return REGISTRY.get_sample_value("frame_buffer_bridge_frames_mirrored_total") or 0.0
    return sum(
        sample.value
        for family in REGISTRY.collect()
        if family.name == "frame_buffer_dead_lettered"
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels["service"] == "bridge"
    )


def frame_ids(records: list[FrameRecord]) -> Counter[str]:
    return Counter(json.loads(r.value)["frame_id"] for r in records)


def spawn_bridge(settings: Settings, name: str, log_dir: Path) -> ChildProcess:
    argv = [sys.executable, "-m", "app.cli", "bridge"]
    return ChildProcess(name, argv, settings_env(settings), log_dir, cwd=ROOT).start()


# --- (a) exactly once in one of the two topics ---------------------------------------------------


async def test_every_entry_lands_exactly_once_in_captured_or_dead_letter(
    make_settings: MakeSettings, redis_of: Callable[[Settings], aioredis.Redis]
) -> None:
    settings = make_settings(bridge_batch_size=500, bridge_block_ms=100)
    redis = redis_of(settings)
    total, cameras = 10_000, 20
    entries: list[Fields] = []
    kinds: list[str | None] = []  # None: valid, else the expected dead-letter reason
    expected_frames: dict[str, tuple[str, int, str | None]] = {}
    seqs: Counter[str] = Counter()
    for n in range(total):
        if n % 20 == 7:  # 5 % malformed, of every kind in turn
            reason, make = MALFORMED[(n // 20) % len(MALFORMED)]
            entries.append(make(n))
            kinds.append(reason)
            continue
        camera = f"cam-{n % cameras:02d}"
        seq = seqs[camera]
        seqs[camera] += 1
        tp = traceparent_for(n) if n % 2 else None
        frame_id = f"f-{n}"
        entries.append(valid(camera, seq, frame_id, tp))
        kinds.append(None)
        expected_frames[frame_id] = (camera, seq, tp)
    stream_ids = await xadd_all(redis, settings.capture_stream, entries)
    expected_dead = {sid: kind for sid, kind in zip(stream_ids, kinds, strict=True) if kind is not None}
    assert len(expected_dead) == 500

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    before = {outcome: frames_metric(outcome) for outcome in ("mirrored", "dead_lettered")}
    bridge = Bridge(bridge_config(settings), consumer="solo", tracer=provider.get_tracer("test"))
    serving = asyncio.create_task(bridge.serve())
    try:
        await wait_until(lambda: bridge.mirrored_total + bridge.dead_lettered_total >= total, 60, "the backlog")
    finally:
        await bridge.close()
        await serving
    assert (bridge.mirrored_total, bridge.dead_lettered_total) == (len(expected_frames), len(expected_dead))
    assert frames_metric("mirrored") - before["mirrored"] == len(expected_frames)
    assert frames_metric("dead_lettered") - before["dead_lettered"] == len(expected_dead)
    assert await group_state(redis, settings) == (0, 0)
    assert (await redis.xpending(settings.capture_stream, settings.capture_group))["pending"] == 0

    captured = await read_frames(settings, lambda rs: len(rs) >= len(expected_frames))
    dead = await read_topic(settings, settings.dead_letter_topic, lambda rs: len(rs) >= len(expected_dead))

    counts = frame_ids(captured)
    assert set(counts) == set(expected_frames)
    assert max(counts.values()) == 1, f"duplicates: {[f for f, c in counts.items() if c > 1][:10]}"
    dead_by_stream = Counter(json.loads(r.value)["stream_id"] for r in dead if r.value is not None)
    assert set(dead_by_stream) == set(expected_dead)
    assert max(dead_by_stream.values()) == 1
    for record in dead:
        assert record.value is not None
        letter = json.loads(record.value)
        assert letter["reason"] == expected_dead[letter["stream_id"]]
        assert letter["detail"] and letter["at"] and isinstance(letter["raw"], dict) and letter["raw"]

    # Keyed by camera, one partition per camera, in capture order; trace context carried on.
    partition_of: dict[str, int] = {}
    last_seq: dict[str, int] = defaultdict(lambda: -1)
    for record in sorted(captured, key=lambda r: (r.partition, r.offset, r.index)):
        assert record.key is not None
        frame = json.loads(record.value)
        camera, seq, tp = expected_frames[frame["frame_id"]]
        assert camera == frame["camera_id"]
        if record.index == 0:
            assert record.key.decode() == camera
        assert partition_of.setdefault(camera, record.partition) == record.partition
        assert seq > last_seq[camera], f"{camera}: sequence {seq} after {last_seq[camera]}"
        last_seq[camera] = seq
        headers = dict(record.headers)
        _, trace_id, span_id, _ = headers["traceparent"].decode().split("-")
        if tp is not None:
            assert trace_id == tp.split("-")[1]  # same trace as the capture
            assert span_id != tp.split("-")[2]  # but the bridge's own span
        else:
            assert int(trace_id, 16) != 0  # a new root
    spans = exporter.get_finished_spans()
    assert len(spans) == len(expected_frames)
    assert {s.name for s in spans} == {"bridge.mirror"}
    with_parent = [s for s in spans if s.parent is not None]
    assert len(with_parent) == sum(1 for _, _, tp in expected_frames.values() if tp)


# --- own pending entries on restart ------------------------------------------------------------


async def test_restart_with_same_name_remirrors_own_pending_and_reports_deleted_entries(
    make_settings: MakeSettings, redis_of: Callable[[Settings], aioredis.Redis]
) -> None:
    # Claim idle is far away: only the own-PEL read from "0" can pick these up in time.
    settings = make_settings(bridge_block_ms=100, bridge_claim_idle_ms=600_000)
    redis = redis_of(settings)
    await redis.xgroup_create(settings.capture_stream, settings.capture_group, id="0", mkstream=True)
    ids = await xadd_all(redis, settings.capture_stream, [valid("cam-1", i, f"f-{i}") for i in range(60)])
    # A previous life of "phoenix" read 40 entries and died before acknowledging them.
    await redis.xreadgroup(settings.capture_group, "phoenix", {settings.capture_stream: ">"}, count=40)
    await redis.xdel(settings.capture_stream, ids[5])  # trimmed while pending: must not vanish silently
    assert await pending_of(redis, settings, "phoenix") == 40

    bridge = Bridge(bridge_config(settings), consumer="phoenix")
    serving = asyncio.create_task(bridge.serve())
    try:
        await wait_until(lambda: bridge.mirrored_total + bridge.dead_lettered_total >= 60, 20, "all entries")
    finally:
        await bridge.close()
        await serving
    assert (bridge.mirrored_total, bridge.dead_lettered_total) == (59, 1)
    assert await pending_of(redis, settings, "phoenix") == 0
    dead = await read_topic(settings, settings.dead_letter_topic, lambda rs: len(rs) >= 1)
    assert [json.loads(r.value or b"{}")["reason"] for r in dead] == ["entry_deleted"]
    assert json.loads(dead[0].value or b"{}")["stream_id"] == ids[5]
    captured = await read_frames(settings, lambda rs: len(rs) >= 59)
    assert frame_ids(captured) == Counter({f"f-{i}": 1 for i in range(60) if i != 5})
    # A clean stop takes the bridge's state key with it.
    assert await redis.get(bridge_state_key(settings.app_id, "phoenix")) is None


# --- (b) SIGKILL mid-batch, another bridge claims ------------------------------------------------


async def test_killed_bridge_entries_are_claimed_by_another(
    make_settings: MakeSettings, redis_of: Callable[[Settings], aioredis.Redis], unique: str, tmp_path: Path
) -> None:
    base = dict(bridge_batch_size=20, bridge_block_ms=50, bridge_claim_idle_ms=500, bridge_claim_interval=0.5)
    settings = make_settings(**base)
    redis = redis_of(settings)
    written = 0
    stop_at: int | None = None  # set once a kill landed: then write a while longer and stop

    async def keep_writing() -> None:
        nonlocal written
        while stop_at is None or written < stop_at:
            chunk = [valid(f"cam-{n % 8}", n // 8, f"k-{n}") for n in range(written, written + 20)]
            await xadd_all(redis, settings.capture_stream, chunk)
            written += len(chunk)
            await asyncio.sleep(0.01)

    writer = asyncio.create_task(keep_writing())
    killed: dict[str, int] = {}
    written_at_kill = 0
    try:
        # A kill can land between two batches; then the victim holds nothing and another one is needed.
        for attempt in range(5):
            victim = f"doomed-{unique}-{attempt}"
            proc = spawn_bridge(make_settings(**base, bridge_consumer_name=victim), victim, tmp_path)
            try:

                async def holding(victim: str = victim, proc: ChildProcess = proc) -> bool:
                    assert proc.alive(), proc.tail()
                    return await pending_of(redis, settings, victim) > 0

                await wait_until(holding, 30, f"{victim} to hold a batch")
            finally:
                proc.kill()
            killed[victim] = await pending_of(redis, settings, victim)
            if killed[victim]:
                break
        written_at_kill = written
        stop_at = written + 1000
        assert any(killed.values()), f"no kill landed mid-batch: {killed}"

        rescuer = Bridge(bridge_config(make_settings(**base)), consumer=f"rescuer-{unique}")
        serving = asyncio.create_task(rescuer.serve())
        try:
            await writer

            async def drained() -> bool:
                return await group_state(redis, settings) == (0, 0)

            await wait_until(drained, 60, "lag and pending 0")
        finally:
            await rescuer.close()
            await serving
    finally:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer

    for victim in killed:
        assert await pending_of(redis, settings, victim) == 0
    assert written > written_at_kill  # entries kept flowing across the kill
    expected = {f"k-{n}" for n in range(written)}
    captured = await read_frames(settings, lambda rs: expected <= set(frame_ids(rs)))
    counts = frame_ids(captured)
    missing = expected - set(counts)
    duplicates = sum(c - 1 for c in counts.values())
    print(
        f"\nSIGKILL test: {len(counts)} frames ({written_at_kill} written at the kill), {duplicates} duplicates,"
        f" pending of the killed consumers {killed}"
    )
    assert not missing, f"{len(missing)} missing, e.g. {sorted(missing)[:5]}"
    assert set(counts) == expected
    # At most one batch of each killed bridge was in flight, so at most that many re-sends.
    assert duplicates <= settings.bridge_batch_size * len(killed)


# --- SIGTERM drains the batch in flight ----------------------------------------------------------


async def test_sigterm_finishes_the_batch_in_flight_and_exits_0(
    make_settings: MakeSettings, redis_of: Callable[[Settings], aioredis.Redis], unique: str, tmp_path: Path
) -> None:
    name = f"graceful-{unique}"
    port = free_port()
    settings = make_settings(
        bridge_batch_size=50, bridge_block_ms=50, bridge_consumer_name=name, bridge_metrics_port=port
    )
    redis = redis_of(settings)
    total = 6000
    await xadd_all(redis, settings.capture_stream, [valid(f"cam-{n % 4}", n // 4, f"g-{n}") for n in range(total)])
    proc = spawn_bridge(settings, "bridge", tmp_path)
    try:

        async def started() -> bool:
            assert proc.alive(), proc.tail()
            state = await group_state(redis, settings)
            return state is not None and state[0] < total - 200

        await wait_until(started, 30, "the bridge to mirror")
        url = f"http://127.0.0.1:{port}/metrics"
        metrics_text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
        rc = await asyncio.to_thread(proc.stop, 30)
    finally:
        proc.kill()
    assert rc == 0, proc.tail()
    assert "frame_buffer_bridge_frames_mirrored_total" in metrics_text
    assert "frame_buffer_stream_backlog_entries" in metrics_text
    # METRICS_V1_ALIASES is on by default: the v1 names are served too.
    assert 'frame_buffer_bridge_frames_total{outcome="mirrored"}' in metrics_text
    assert "frame_buffer_stream_backlog " in metrics_text
    state = await group_state(redis, settings)
    assert state is not None
    lag, pending = state
    assert pending == 0  # the batch in flight was finished and acknowledged
    assert await redis.get(bridge_state_key(settings.app_id, name)) is None
    delivered = total - lag
    print(f"\nSIGTERM test: {delivered} of {total} entries mirrored before the bridge exited")
    captured = await read_frames(settings, lambda rs: len(rs) >= delivered)
    counts = frame_ids(captured)
    assert len(counts) == sum(counts.values()) == delivered
    assert set(counts) == {f"g-{n}" for n in range(delivered)}  # a prefix: the stream was read in order


# --- (c) throttle --------------------------------------------------------------------------------


async def test_critical_backpressure_pauses_reading_and_normal_resumes(
    make_settings: MakeSettings, redis_of: Callable[[Settings], aioredis.Redis]
) -> None:
    settings = make_settings(bridge_batch_size=40, bridge_block_ms=100)
    redis = redis_of(settings)
    key = backpressure_key(settings.app_id)
    state_key = bridge_state_key(settings.app_id, "throttled")

    async def set_level(level: str) -> None:
        doc = {"level": level, "router_lag": 0, "partitions": {}, "at": "2026-01-01T00:00:00+00:00"}
        await redis.set(key, json.dumps(doc), ex=10)

    async def reported(state: str, backlog: int | None = None) -> bool:
        raw = await redis.get(state_key)
        doc = json.loads(raw) if raw else {}
        return doc.get("state") == state and (backlog is None or doc.get("backlog") == backlog)

    await set_level("CRITICAL")
    await xadd_all(redis, settings.capture_stream, [valid("cam-1", i, f"t-{i}") for i in range(200)])
    bridge = Bridge(bridge_config(settings), consumer="throttled")
    serving = asyncio.create_task(bridge.serve())
    try:
        await wait_until(lambda: reported("paused", 200), 10, "a paused report")
        await xadd_all(redis, settings.capture_stream, [valid("cam-1", i, f"t-{i}") for i in range(200, 300)])
        await wait_until(lambda: reported("paused", 300), 10, "the backlog to grow while paused")
        assert bridge.mirrored_total == 0
        assert await group_state(redis, settings) == (300, 0)

        await set_level("HIGH")
        await wait_until(lambda: reported("slowed"), 10, "a slowed report")
        await wait_until(lambda: bridge.mirrored_total > 0, 10, "slowed progress")

        await set_level("NORMAL")
        await wait_until(lambda: bridge.mirrored_total == 300, 20, "the rest after NORMAL")
        await wait_until(lambda: reported("running", 0), 10, "a running report with no backlog")
        doc = json.loads(await redis.get(state_key) or b"{}")
        assert doc["consumer"] == "throttled"
        assert (doc["pending"], doc["mirrored_total"], doc["dead_lettered_total"]) == (0, 300, 0)
        assert isinstance(doc["rate"], float) and doc["at"]
        assert await redis.ttl(state_key) > 0
    finally:
        await bridge.close()
        await serving
    captured = await read_frames(settings, lambda rs: len(rs) >= 300)
    assert frame_ids(captured) == Counter({f"t-{i}": 1 for i in range(300)})


async def test_group_is_created_whatever_starts_first(
    make_settings: MakeSettings, redis_of: Callable[[Settings], aioredis.Redis]
) -> None:
    """Entries written before the bridge ever ran, and a group that already exists (BUSYGROUP), are fine."""
    settings = make_settings(bridge_block_ms=100)
    redis = redis_of(settings)
    await xadd_all(redis, settings.capture_stream, [valid("cam-9", i, f"e-{i}") for i in range(30)])
    first, second = Bridge(bridge_config(settings), consumer="one"), Bridge(bridge_config(settings), consumer="two")
    tasks = [asyncio.create_task(first.serve()), asyncio.create_task(second.serve())]
    try:
        await wait_until(lambda: first.mirrored_total + second.mirrored_total >= 30, 20, "30")
        await xadd_all(redis, settings.capture_stream, [valid("cam-9", i, f"e-{i}") for i in range(30, 60)])
        await wait_until(lambda: first.mirrored_total + second.mirrored_total >= 60, 20, "60")
    finally:
        await asyncio.gather(first.close(), second.close())
        await asyncio.gather(*tasks)
    captured = await read_frames(settings, lambda rs: len(rs) >= 60)
    assert frame_ids(captured) == Counter({f"e-{i}": 1 for i in range(60)})
