"""The long-lived heap is frozen out of full collections where a service is paused anyway."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.main import create_worker_app
from frame_buffer_sdk.heap import freeze_long_lived
from tests.unit.test_faust_conventions import unit_settings


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def tracked(obj: object) -> bool:
    """Whether a full collection would walk ``obj`` (frozen objects are not in any generation)."""
    return any(o is obj for o in gc.get_objects())


def test_objects_alive_at_the_freeze_leave_the_collections_and_later_ones_do_not() -> None:
    before = [object()]  # a list: tracked by the collector, unlike a bare object
    frozen = freeze_long_lived("test")
    after = [object()]
    # Not equal to get_freeze_count() later: a frozen object freed by its refcount leaves the count.
    assert frozen > 0
    assert not tracked(before)
    assert tracked(after)


def test_cyclic_garbage_is_collected_before_it_could_be_frozen() -> None:
    class Node:
        pass

    a, b = Node(), Node()
    a.peer, b.peer = b, a  # type: ignore[attr-defined]
    del a, b
    freeze_long_lived("test")
    assert not [o for o in gc.get_referrers(Node) if isinstance(o, Node)]


async def test_the_worker_freezes_when_a_rebalance_completes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built = create_worker_app(unit_settings(tmp_path))
    # The signal's other receiver asks the consumer about leadership; there is none in a unit test.
    monkeypatch.setattr(built.app, "is_leader", lambda: False)
    assert gc.get_freeze_count() == 0
    await built.app.on_rebalance_complete.send()
    assert gc.get_freeze_count() > 0
