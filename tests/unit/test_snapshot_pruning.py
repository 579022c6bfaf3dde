"""The frame_counts table keeps a key per worker boot and partition; a new owner deletes the keys
that can never win again, one changelog record at a time, and never its own."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from agents.stats_ledger import SnapshotStore
from core.ledger import Ledger


class _Changelog:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Any, int, str | None]] = []
        self.futures: list[asyncio.Future[None]] = []

    def send_soon(self, key: str, value: Any, partition: int, value_serializer: str | None = None) -> Any:
        self.sent.append((key, value, partition, value_serializer))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.futures.append(future)
        return future


class _Table(dict[str, Any]):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.changelog_topic = _Changelog()


def _snap(covered: int, at: float = 1.0) -> dict[str, Any]:
    return {"covered": covered, "at": at}


def _store(table: _Table) -> SnapshotStore:
    orch = SimpleNamespace(tables=SimpleNamespace(frame_counts=table), boot_id="me", stats=Ledger("me"))
    return SnapshotStore(orch)  # type: ignore[arg-type]


async def test_a_new_owner_deletes_the_writers_that_cannot_win_and_keeps_every_best() -> None:
    table = _Table(
        {
            "1@a": {"cap/1": _snap(10), "res/1": _snap(5)},  # best of res/1
            "1@b": {"cap/1": _snap(20), "res/1": _snap(3)},  # best of cap/1
            "1@c": {"cap/1": _snap(7)},  # beaten everywhere
            "1@me": {"cap/1": _snap(1)},  # this boot's own: never deleted
            "2@d": {"cap/2": _snap(1)},  # another partition: not this load's business
        }
    )
    store = _store(table)
    loaded = store.load(("cap", 1))
    assert sorted(s["covered"] for s in loaded) == [1, 7, 10, 20], "every writer's snapshot is still read"
    store.load(("res", 1))  # the partition's next source: nothing deleted twice

    sent = table.changelog_topic.sent
    assert sent == [("1@c", None, 1, "raw")]


async def test_deletes_and_snapshots_travel_one_record_at_a_time() -> None:
    table = _Table({"1@a": {"cap/1": _snap(10)}, "1@b": {"cap/1": _snap(5)}, "1@c": {"cap/1": _snap(3)}})
    store = _store(table)
    ledger: Ledger = store.orch.stats
    state = ledger._assigned(("cap", 1))
    store.load(("cap", 1))
    changelog = table.changelog_topic
    assert [key for key, *_ in changelog.sent] == ["1@c"], "one in flight per changelog partition"

    state.covered = 11
    store.persist(state, {"source": "cap/1", "covered": 11})
    assert len(changelog.sent) == 1, "the snapshot waits for the delete in flight"
    changelog.futures[0].set_result(None)
    await asyncio.sleep(0)
    assert [key for key, *_ in changelog.sent] == ["1@c", "1@me"], "a snapshot goes before the next delete"
    changelog.futures[1].set_result(None)
    await asyncio.sleep(0)
    assert [(key, value) for key, value, *_ in changelog.sent[2:]] == [("1@b", None)]
    assert state.durable == 11
