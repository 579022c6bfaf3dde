"""The processor SDK on real Kafka and Redis: the consume/process/publish/commit core without the
web API, the register/heartbeat/deregister lifecycle against a stand-in of the REST contract,
and at-least-once delivery when a replica dies before committing."""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from core.lag import LagSampler, processor_watch
from core.settings import Settings
from devtools.devstack import free_port
from devtools.processes import settings_env
from frame_buffer_sdk import Frame, ProcessorClient, RejectFrame
from frame_buffer_sdk.api import RegistrationError
from frame_buffer_sdk.kafka import ensure_topics
from frame_buffer_sdk.models import RoutedFrame

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration

CAMERAS = ("cam-a", "cam-b", "cam-c")


def _routed(settings: Settings, pid: str, seq: int, frame_key: str | None) -> RoutedFrame:
    now = datetime.now(UTC)
    return RoutedFrame(
        frame_id=f"f-{seq}",
        camera_id=CAMERAS[seq % len(CAMERAS)],
        captured_at=now,
        sequence=seq,
        width=4,
        height=2,
        format="gray8",
        frame_key=frame_key,
        processor_id=pid,
        capability="checksum",
        routed_at=now,
    )


async def _produce(settings: Settings, topic: str, records: list[tuple[str, bytes, str]]) -> None:
    """(camera_id, value, trace id) records with a W3C traceparent header each."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=5)
    await producer.start()
    try:
        acks = []
        for camera, value, trace_id in records:
            headers = [("traceparent", f"00-{trace_id}-{secrets.token_hex(8)}-01".encode())]
            acks.append(await producer.send(topic, value, key=camera.encode(), headers=headers))
        await asyncio.gather(*acks)
    finally:
        await producer.stop()


async def _read_all(settings: Settings, topic: str, expected: int, within: float = 30.0) -> list[Any]:
    """Every record of ``topic`` once at least ``expected`` arrived (then a short grace for extras)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.captured_partitions)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        out: list[Any] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        grace_until: float | None = None
        while loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            out.extend(r for part in batch.values() for r in part)
            if len(out) >= expected:
                grace_until = grace_until or loop.time() + 0.5
                if loop.time() >= grace_until:
                    break
        return out
    finally:
        await consumer.stop()


async def _wait_until(done: Callable[[], bool], within: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        if done():
            return
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_one_result_per_frame_dead_letters_with_reasons_and_commits_everything(
    make_settings: Callable[..., Settings], unique: str
) -> None:
    settings = make_settings(heartbeat_interval=1.0)
    pid = "checksum"
    topic, group = processor_watch(settings, pid)
    # Results and dead letters have the captured topic's partition count (as the worker declares them).
    outputs = [
        (settings.results_topic, settings.captured_partitions),
        (settings.dead_letter_topic, settings.captured_partitions),
    ]
    await ensure_topics(settings.bootstrap_servers, [(topic, 3), *outputs])
    redis = aioredis.Redis.from_url(settings.redis_url)
    good = 24
    pixels = {seq: bytes((seq + i) % 256 for i in range(8)) for seq in range(good)}
    trace_ids = {seq: secrets.token_hex(16) for seq in range(good + 3)}
    try:
        await redis.mset({f"{unique}:px:{seq}": data for seq, data in pixels.items()})
        records = [
            (CAMERAS[s % 3], _routed(settings, pid, s, f"{unique}:px:{s}").model_dump_json().encode(), trace_ids[s])
            for s in range(good)
        ]
        # Pixels expired before the processor came to it / never stored / not a RoutedFrame at all.
        records.append(
            ("cam-a", _routed(settings, pid, good, f"{unique}:px:gone").model_dump_json().encode(), trace_ids[good])
        )
        records.append(
            ("cam-b", _routed(settings, pid, good + 1, None).model_dump_json().encode(), trace_ids[good + 1])
        )
        records.append(("cam-c", b'{"frame_id": "f-x"}', trace_ids[good + 2]))
        # One frame the user's function refuses, one it crashes on.
        await redis.set(f"{unique}:px:rejected", b"\x00" * 8)
        await redis.set(f"{unique}:px:crash", b"\xff" * 8)
        records.append(
            ("cam-a", _routed(settings, pid, 900, f"{unique}:px:rejected").model_dump_json().encode(), "0" * 31 + "1")
        )
        records.append(
            ("cam-b", _routed(settings, pid, 901, f"{unique}:px:crash").model_dump_json().encode(), "0" * 31 + "2")
        )
        await _produce(settings, topic, records)
    finally:
        await redis.aclose()

    seen_order: dict[str, list[int]] = {}

    async def checksum(frame: Frame) -> dict[str, Any]:
        if frame.pixels == b"\x00" * 8:
            raise RejectFrame("all_black", "nothing to see")
        if frame.pixels == b"\xff" * 8:
            raise ZeroDivisionError("user bug")
        seen_order.setdefault(frame.camera_id, []).append(frame.routed.sequence or 0)
        await asyncio.sleep(0.001)
        return {"sum": sum(frame.pixels), "n": len(frame.pixels)}

    client = ProcessorClient(settings, pid, ["checksum"], checksum, stateful=True, concurrency=3, max_batch=10)
    task = asyncio.create_task(client.run(register=False))
    results = await _read_all(settings, settings.results_topic, expected=good)
    dead = await _read_all(settings, settings.dead_letter_topic, expected=5)
    await asyncio.wait_for(client.stop(), timeout=30)
    await asyncio.wait_for(task, timeout=5)

    docs = [json.loads(r.value) for r in results]
    assert sorted(d["frame_id"] for d in docs) == sorted(f"f-{s}" for s in range(good)), "exactly one result each"
    for record, doc in zip(results, docs, strict=True):
        seq = int(doc["frame_id"].removeprefix("f-"))
        assert doc["result"] == {"sum": sum(pixels[seq]), "n": 8}
        assert (doc["processor_id"], doc["capability"], doc["camera_id"]) == (pid, "checksum", CAMERAS[seq % 3])
        assert record.key == CAMERAS[seq % 3].encode()
        assert datetime.fromisoformat(doc["processed_at"]) >= datetime.fromisoformat(doc["routed_at"])
        traceparent = dict(record.headers)["traceparent"].decode()
        assert traceparent.split("-")[1] == trace_ids[seq], "the result continues the frame's trace"

    # stateful: each camera's frames were processed in the order they were routed.
    for camera, order in seen_order.items():
        assert order == sorted(order), camera

    reasons = {json.loads(r.value)["frame_id"]: json.loads(r.value) for r in dead}
    assert len(dead) == 5
    assert reasons[f"f-{good}"]["reason"] == "pixels_missing"
    assert "px:gone" in reasons[f"f-{good}"]["detail"]
    assert reasons[f"f-{good + 1}"]["reason"] == "pixels_missing"
    assert reasons["f-900"]["reason"] == "all_black"
    assert reasons["f-901"]["reason"] == "processing_failed" and "ZeroDivisionError" in reasons["f-901"]["detail"]
    invalid = reasons[None]
    assert invalid["reason"] == "invalid_routed_frame" and invalid["raw"]["value"] == '{"frame_id": "f-x"}'
    assert all(d["processor_id"] == pid for d in reasons.values())
    assert client.stats.processed == good
    assert dict(client.stats.dead_lettered) == {
        "pixels_missing": 2,
        "invalid_routed_frame": 1,
        "all_black": 1,
        "processing_failed": 1,
    }

    async with LagSampler(settings.bootstrap_servers) as sampler:
        lag = (await sampler.sample({pid: (topic, group)}))[pid]
    assert lag.total == 0
    assert lag.committed_total == len(records) == sum(lag.end.values())


class _StubOrchestrator:
    """The processor REST contract on a local port: records calls, answers like the worker.

    The first registration answers 503 (a worker still starting), so the SDK must retry.
    """

    def __init__(self, topic: str, group: str) -> None:
        self.topic, self.group = topic, group
        self.calls: list[tuple[str, Any]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/v1/processors/register", self._register)
        app.router.add_post("/api/v1/processors/heartbeat", self._heartbeat)
        app.router.add_delete("/api/v1/processors/{pid}", self._delete)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _register(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.calls.append(("register", body))
        if sum(1 for kind, _ in self.calls if kind == "register") == 1:
            return web.json_response({"detail": "registration not confirmed in time; retry"}, status=503)
        record = {**body, "partitions": 2, "topic": self.topic, "consumer_group": self.group, "status": "healthy"}
        return web.json_response(record, status=201)

    async def _heartbeat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.calls.append(("heartbeat", body["status"]))
        return web.json_response({"processor_id": body["processor_id"], "accepted": True})

    async def _delete(self, request: web.Request) -> web.Response:
        self.calls.append(("delete", request.match_info["pid"]))
        return web.Response(status=204)


async def test_run_registers_with_retry_heartbeats_drains_and_deregisters(
    make_settings: Callable[..., Settings], unique: str
) -> None:
    # The orchestrator names the topic and group; the SDK must use what it is told.
    stub = _StubOrchestrator(topic=f"custom.{unique}", group=f"custom-group.{unique}")
    await stub.start()
    try:
        settings = make_settings(orchestrator_url=stub.url, heartbeat_interval=0.2)
        redis = aioredis.Redis.from_url(settings.redis_url)
        try:
            await redis.set(f"{unique}:px:0", bytes(range(8)))
        finally:
            await redis.aclose()

        async def count(frame: Frame) -> dict[str, Any]:
            return {"bytes": len(frame.pixels)}

        client = ProcessorClient(settings, "lifecycle", ["count"], count, capacity=7, metadata={"gpu": False})
        task = asyncio.create_task(client.run())
        await _wait_until(lambda: sum(1 for kind, _ in stub.calls if kind == "heartbeat") >= 2, 20, "heartbeats")
        assert client.topic == stub.topic and client.group == stub.group

        value = _routed(settings, "lifecycle", 0, f"{unique}:px:0").model_dump_json().encode()
        await _produce(settings, stub.topic, [("cam-a", value, secrets.token_hex(16))])
        results = await _read_all(settings, settings.results_topic, expected=1)
        await asyncio.wait_for(client.stop(), timeout=30)
        await asyncio.wait_for(task, timeout=5)
    finally:
        await stub.close()

    assert [json.loads(r.value)["result"] for r in results] == [{"bytes": 8}]
    kinds = [kind for kind, _ in stub.calls]
    assert kinds[:2] == ["register", "register"], "retried after the 503"
    assert stub.calls[1][1] == {
        "id": "lifecycle",
        "capabilities": ["count"],
        "capacity": 7,
        "stateful": False,
        "partitions": None,
        "metadata": {"gpu": False},
        "queue": None,  # SDK processors read their Kafka topic; only detektr's name a Redis queue
    }
    assert stub.calls[-2:] == [("heartbeat", "draining"), ("delete", "lifecycle")]
    assert {status for kind, status in stub.calls[2:-2] if kind == "heartbeat"} == {"healthy"}
    async with LagSampler(settings.bootstrap_servers) as sampler:
        lag = (await sampler.sample({"x": (stub.topic, stub.group)}))["x"]
    assert (lag.total, len(lag.end)) == (0, 2), "topic created with the partitions the orchestrator gave"


async def test_registration_refused_or_unreachable_is_a_clear_error(make_settings: Callable[..., Settings]) -> None:
    async def nothing(frame: Frame) -> dict[str, Any]:
        return {}

    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"detail": "invalid request body"}, status=422)

    app = web.Application()
    app.router.add_post("/api/v1/processors/register", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        client = ProcessorClient(make_settings(orchestrator_url=f"http://127.0.0.1:{port}"), "p", ["c"], nothing)
        with pytest.raises(RegistrationError, match="HTTP 422"):
            await client.run()
    finally:
        await runner.cleanup()

    closed = f"http://127.0.0.1:{free_port()}"
    client = ProcessorClient(make_settings(orchestrator_url=closed), "p", ["c"], nothing, register_timeout=1.0)
    with pytest.raises(RegistrationError, match="did not accept processor 'p' within 1 s"):
        await client.run()


_BLOCKING_REPLICA = """
import asyncio, sys
import redis.asyncio as aioredis
from core.settings import load_settings
from frame_buffer_sdk import ProcessorClient

settings = load_settings()
marker = sys.argv[1]

async def process(frame):
    if frame.routed.sequence == 5:
        # Stuck here, batch uncommitted: the test SIGKILLs this replica now.
        r = aioredis.Redis.from_url(settings.redis_url)
        await r.set(marker, "1")
        await asyncio.Event().wait()
    return {"replica": "doomed"}

ProcessorClient(settings, "alo", ["c"], process, max_batch=500).run_sync(register=False)
"""


async def test_replica_killed_before_commit_is_reprocessed_by_another(
    make_settings: Callable[..., Settings], unique: str
) -> None:
    # A short session: the survivor's join waits for the dead member's session to expire.
    settings = make_settings(broker_session_timeout=3.0)
    topic, group = processor_watch(settings, "alo")
    outputs = [(settings.results_topic, settings.captured_partitions)]
    await ensure_topics(settings.bootstrap_servers, [(topic, 2), *outputs])
    frames = 12
    redis = aioredis.Redis.from_url(settings.redis_url)
    marker = f"{unique}:stuck"
    try:
        await redis.mset({f"{unique}:px:{s}": bytes([s]) * 8 for s in range(frames)})
        records = [
            (CAMERAS[s % 3], _routed(settings, "alo", s, f"{unique}:px:{s}").model_dump_json().encode(), "a" * 32)
            for s in range(frames)
        ]
        await _produce(settings, topic, records)
        doomed = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _BLOCKING_REPLICA, marker, env=settings_env(settings), cwd=str(ROOT)
        )
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while True:
                if await redis.exists(marker):
                    break
                assert doomed.returncode is None, "the replica died on its own"
                assert loop.time() < deadline, "the replica never got its frames"
                await asyncio.sleep(0.05)
        finally:
            doomed.send_signal(signal.SIGKILL)
            await asyncio.wait_for(doomed.wait(), timeout=10)
    finally:
        await redis.aclose()

    async def survive(frame: Frame) -> dict[str, Any]:
        return {"replica": "survivor"}

    survivor = ProcessorClient(settings, "alo", ["c"], survive)
    task = asyncio.create_task(survivor.run(register=False))
    try:
        await _wait_until(lambda: survivor.stats.committed >= frames, 40, "the survivor to commit every frame")
    finally:
        await asyncio.wait_for(survivor.stop(), timeout=30)
        await task

    results = [json.loads(r.value) for r in await _read_all(settings, settings.results_topic, expected=frames)]
    by_survivor = sorted(d["frame_id"] for d in results if d["result"] == {"replica": "survivor"})
    assert by_survivor == sorted(f"f-{s}" for s in range(frames)), "every uncommitted frame processed again"
    async with LagSampler(settings.bootstrap_servers) as sampler:
        assert (await sampler.sample({"alo": (topic, group)}))["alo"].total == 0


async def test_a_pair_finished_once_is_not_processed_again_by_any_processor(
    make_settings: Callable[..., Settings], unique: str
) -> None:
    """Redelivery (a replay after a crash, or failover to a peer) finds the done-marker and skips."""
    settings = make_settings()
    frames = 6
    first_topic, _ = processor_watch(settings, "first")
    second_topic, _ = processor_watch(settings, "second")
    await ensure_topics(
        settings.bootstrap_servers,
        [(first_topic, 1), (second_topic, 1), (settings.results_topic, settings.captured_partitions)],
    )
    redis = aioredis.Redis.from_url(settings.redis_url)
    await redis.mset({f"{unique}:px:{s}": bytes([s]) * 8 for s in range(frames)})
    await redis.aclose()
    for pid, topic in (("first", first_topic), ("second", second_topic)):
        records = [
            (CAMERAS[s % 3], _routed(settings, pid, s, f"{unique}:px:{s}").model_dump_json().encode(), "b" * 32)
            for s in range(frames)
        ]
        await _produce(settings, topic, records)

    async def echo(frame: Frame) -> dict[str, Any]:
        return {"seen": frame.frame_id}

    clients = {}
    for pid in ("first", "second"):
        client = clients[pid] = ProcessorClient(settings, pid, ["checksum"], echo)
        task = asyncio.create_task(client.run(register=False))
        try:
            await _wait_until(lambda c=client: c.stats.committed >= frames, 40, f"{pid} to commit every frame")
        finally:
            await asyncio.wait_for(client.stop(), timeout=30)
            await task

    results = [json.loads(r.value) for r in await _read_all(settings, settings.results_topic, expected=frames)]
    assert sorted(d["frame_id"] for d in results) == sorted(f"f-{s}" for s in range(frames))
    assert {d["processor_id"] for d in results} == {"first"}
    assert clients["second"].stats.duplicates == frames and clients["second"].stats.processed == 0
