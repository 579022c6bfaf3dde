"""The router's dedupe index: window, bound, batches for the changelog, rebuild."""

from __future__ import annotations

import pytest

from agents.dedupe_index import DedupeIndex


def test_a_pair_is_remembered_for_the_whole_window_and_then_forgotten() -> None:
    # The windowed table it replaces forgot pairs at its 30 s cleanup, whatever the window said.
    index = DedupeIndex(window_seconds=120, max_pairs=100)
    index.put(0, "f|det", "det-a@0:1", now=1_000.0)
    assert index.get(0, "f|det", now=1_000.0 + 60) == "det-a@0:1"
    assert index.get(0, "f|det", now=1_000.0 + 119.9) == "det-a@0:1"
    assert index.get(0, "f|det", now=1_000.0 + 120) is None
    index.expire(0, now=1_000.0 + 121)
    assert len(index) == 0


def test_the_oldest_pairs_go_first_past_the_bound_and_partitions_are_apart() -> None:
    index = DedupeIndex(window_seconds=600, max_pairs=3)
    for i in range(5):
        index.put(1, f"f{i}|det", "p@o", now=float(i))
    assert [index.get(1, f"f{i}|det", now=5.0) for i in range(5)] == [None, None, "p@o", "p@o", "p@o"]
    assert index.get(2, "f4|det", now=5.0) is None


def test_batches_are_due_by_time_or_size_and_expire_with_their_pairs() -> None:
    index = DedupeIndex(window_seconds=10, max_pairs=1_000, flush_seconds=0.1, flush_pairs=3)
    index.put(0, "a|x", "p@0:0", now=0.0)
    assert index.due(0, now=0.05) is None
    first = index.due(0, now=0.1)
    assert first is not None and first.key == "0:0" and first.pairs == [["a|x", "p@0:0", 0.0]]
    for k in "bcd":
        index.put(0, f"{k}|x", "p@0:1", now=1.0)
    second = index.due(0, now=1.0)  # three pairs: due at once
    assert second is not None and second.key == "0:1" and second.expired == []
    index.put(0, "e|x", "p@0:2", now=20.0)
    third = index.due(0, now=20.5)
    assert third is not None and third.expired == ["0:0", "0:1"]


def test_a_partition_is_rebuilt_from_its_batches_in_order() -> None:
    index = DedupeIndex(window_seconds=100, max_pairs=1_000)
    batches = [("3:1", [["a|x", "p2@3:9", 50.0]]), ("3:0", [["a|x", "p1@3:1", 10.0], ["old|x", "p@3:0", -200.0]])]
    assert index.load(3, batches, now=60.0) == 1
    assert index.get(3, "a|x", now=60.0) == "p2@3:9"  # the later batch wins
    assert index.get(3, "old|x", now=60.0) is None
    index.put(3, "b|x", "p@3:10", now=61.0)
    flush = index.due(3, now=62.0)
    assert flush is not None and flush.key == "3:2"


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        DedupeIndex(window_seconds=0, max_pairs=10)
