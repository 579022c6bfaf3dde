"""`frame-orchestrator dead-letters list|replay` on the real stack (issue 12 §6).

A real worker dead-letters frames nobody can process (and a record that is no frame); list
filters them; replay sends the frames back to the captured topic once each, where the worker
routes them to the processor that registered since; a second replay skips them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from app.dead_letters import REPLAY_HEADER, marker_topic, read_records
from app.dead_letters import read_topic as read_topic_from
from frame_buffer_sdk.kafka import ensure_topics
from frame_buffer_sdk.models import DeadLetter
from tests.integration.cluster import (
    Cluster,
    http_json,
    produce_frames,
    read_topic,
    small_frame,
    store_pixels,
    wait_until,
)
from tests.integration.tools import cli, one_worker, registered

pytestmark = pytest.mark.integration


@pytest.fixture
async def worker(make_settings: Any, tmp_path: Path) -> AsyncIterator[tuple[Cluster, str]]:
    async with one_worker(Cluster(make_settings(), tmp_path / "logs")) as running:
        yield running


def _ids(letters: list[dict[str, Any]]) -> list[str]:
    return sorted(str(letter["frame_id"]) for letter in letters)


async def test_list_filters_and_replay_routes_each_letter_once(worker: tuple[Cluster, str], unique: str) -> None:
    cluster, url = worker
    settings = cluster.settings
    kept = [small_frame(f"a-{n}-{unique}", "cam-a", n, f"frame:a-{n}-{unique}", ["ocr"]) for n in range(3)]
    kept.append(small_frame(f"b-0-{unique}", "cam-b", 0, f"frame:b-0-{unique}", ["ocr"]))
    gone = small_frame(f"a-gone-{unique}", "cam-a", 9, f"frame:a-gone-{unique}", ["ocr"])
    await store_pixels(settings, kept)  # the pixels of `gone` were never stored (or have expired)
    await ensure_topics(settings.bootstrap_servers, [(settings.captured_topic, settings.captured_partitions)])
    await produce_frames(settings, [*kept, gone])
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(settings.captured_topic, b"not json at all", key=b"cam-z")
    finally:
        await producer.stop()
    letters = await read_topic(settings, settings.dead_letter_topic, until=lambda got: len(got) >= 6, max_seconds=60)
    assert sorted(letter["reason"] for letter in letters) == ["invalid_frame"] + ["no_capable_processor"] * 5

    listed = (await cli(settings, "dead-letters", "list", "--json")).json()
    assert len(listed) == 6 and all(":" in letter["id"] for letter in listed)
    by_camera = (
        await cli(settings, "dead-letters", "list", "--json", "--reason", "no_capable_processor", "--camera", "cam-a")
    ).json()
    assert _ids(by_camera) == _ids([f.model_dump() for f in [*kept[:3], gone]])
    invalid = (await cli(settings, "dead-letters", "list", "--json", "--reason", "invalid_frame")).json()
    assert [letter["camera_id"] for letter in invalid] == [None] and invalid[0]["raw"]["value"] == "not json at all"
    assert len((await cli(settings, "dead-letters", "list", "--json", "--since", "10m")).json()) == 6
    assert (await cli(settings, "dead-letters", "list", "--json", "--until", "10m")).json() == []
    table = await cli(settings, "dead-letters", "list", "--camera", "cam-b")
    assert table.code == 0 and "1 dead letter(s)" in table.out and "no_capable_processor" in table.out, table.out

    refused = await cli(settings, "dead-letters", "replay")
    assert refused.code == 2 and "--all" in refused.err

    pid = f"ocr-{unique}"
    async with registered(url, {"id": pid, "capabilities": ["ocr"], "capacity": 100, "partitions": 2}):
        dry = (await cli(settings, "dead-letters", "replay", "--all", "--dry-run", "--json")).json()
        assert _ids(dry["replayed"]) == _ids([f.model_dump() for f in kept])
        first = (await cli(settings, "dead-letters", "replay", "--all", "--json")).json()
        assert _ids(first["replayed"]) == _ids([f.model_dump() for f in kept]) and first["already_replayed"] == []
        why = {letter["reason"]: letter["why"] for letter in first["not_replayable"]}
        assert "not a valid frame" in why["invalid_frame"] and "no longer in Redis" in why["no_capable_processor"]

        # The router routes each replayed frame to the processor that registered since, once.
        def routed_all(got: list[Any]) -> bool:
            return {f["frame_id"] for f in got} >= {f.frame_id for f in kept}

        routed = await read_topic(settings, settings.ready_topic(pid), until=routed_all, max_seconds=60)
        assert sorted(f["frame_id"] for f in routed) == sorted(f.frame_id for f in kept)
        assert all(f["metadata"]["rerouted_from"] == "dead-letters" for f in routed)
        assert {f["metadata"]["replayed_from"] for f in routed} == {
            f"{settings.dead_letter_topic}:{letter['id']}" for letter in first["replayed"]
        }

        again = await cli(settings, "dead-letters", "replay", "--all")
        assert again.code == 0 and "replayed 0 dead letter(s)" in again.out, again.out
        assert "skipped 4 already replayed" in again.out and "2 not replayable" in again.out

    captured = await read_records(settings, settings.captured_topic)
    replayed = [r for r in captured if any(name == REPLAY_HEADER for name, _ in r.headers)]
    assert len(replayed) == 4
    refs = {dict(r.headers)[REPLAY_HEADER].decode() for r in replayed}
    assert len(refs) == 4
    markers = await read_records(settings, marker_topic(settings))
    assert sorted(m.key.decode() for m in markers) == sorted(refs)
    assert {json.loads(m.value)["captured_topic"] for m in markers} == {settings.captured_topic}
    # Replayed frames are re-routes: they are not counted as captured a second time.
    stats = await wait_until(lambda: _stats(url), 20, what="stats with the replayed frames routed")
    assert stats["captured"] == 6 and stats["rerouted"] == 4


async def _stats(url: str) -> Any:
    status, body = await http_json("GET", f"{url}/api/v1/frames/stats")
    return body if status == 200 and body.get("rerouted", 0) >= 4 else None


async def test_since_starts_the_read_at_that_time_and_replays_only_letters_from_then(
    make_settings: Any, unique: str
) -> None:
    """Letters stamped two days ago, then two recent ones, in one partition. With --since the
    read starts at the broker's time-index answer (the old ones are not read at all), or, on a
    broker without one (Tansu), at the start; either way only the recent letters are listed and
    replayed, and their markers are found again without reading what came before."""
    settings = make_settings()
    topic = settings.dead_letter_topic
    await ensure_topics(settings.bootstrap_servers, [(topic, 1)])
    two_days_ago = datetime.now(UTC) - timedelta(days=2)
    old = [small_frame(f"old-{n}-{unique}", "cam-a", n, f"frame:old-{n}-{unique}", ["ocr"]) for n in range(3)]
    new = [small_frame(f"new-{n}-{unique}", "cam-a", n, f"frame:new-{n}-{unique}", ["ocr"]) for n in range(2)]
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for frame, at in [*((f, two_days_ago) for f in old), *((f, None) for f in new)]:
            letter = DeadLetter(
                reason="no_capable_processor",
                detail="none registered",
                frame_id=frame.frame_id,
                camera_id=frame.camera_id,
                capability="ocr",
                raw=frame.model_dump(mode="json"),
                **({"at": at} if at else {}),
            )
            stamp = int(at.timestamp() * 1000) if at else None
            await producer.send_and_wait(
                topic, letter.model_dump_json().encode(), key=frame.frame_id.encode(), timestamp_ms=stamp
            )
    finally:
        await producer.stop()

    read = await read_topic_from(
        settings, topic, since_ms=int((datetime.now(UTC) - timedelta(hours=1)).timestamp() * 1000)
    )
    offsets = [r.offset for r in read.records]
    assert offsets == ([3, 4] if read.from_time_index else [0, 1, 2, 3, 4]), read

    listed = (await cli(settings, "dead-letters", "list", "--json", "--since", "1h")).json()
    assert _ids(listed) == _ids([f.model_dump() for f in new])
    first = (await cli(settings, "dead-letters", "replay", "--since", "1h", "--no-pixel-check", "--json")).json()
    assert _ids(first["replayed"]) == _ids([f.model_dump() for f in new])
    letters = {f"{topic}:0:{r.offset}": r.timestamp for r in read.records}
    markers = await read_records(settings, marker_topic(settings))
    assert len(markers) == 2 and all(m.timestamp >= letters[m.key.decode()] for m in markers)
    again = await cli(settings, "dead-letters", "replay", "--since", "1h", "--no-pixel-check")
    assert again.code == 0 and "replayed 0 dead letter(s)" in again.out and "skipped 2 already replayed" in again.out
