"""agents.latest_waiting: the newest held frame per key, its coalesced writes and the drain's verdict."""

from __future__ import annotations

import pytest

from agents.latest_waiting import Held, LatestWaiting, Verdict, judge, parse_held

KEY = "cam-1|object_detection"


def test_a_burst_for_one_key_writes_once_per_tick_and_the_newest_wins() -> None:
    latest = LatestWaiting(tick_seconds=0.1)
    writes = []
    for i in range(100):  # 100 holds in 50 ms
        writes += latest.held(0, KEY, Held(f"f{i}", (i, 0)), now=10.0 + i * 0.0005)
    assert writes == [(KEY, Held("f0", (0, 0)))], "the first hold after a quiet tick is written at once"
    assert latest.newest(0, KEY) == Held("f99", (99, 0))
    assert latest.due(0, 10.09) == []
    assert latest.due(0, 10.11) == [(KEY, Held("f99", (99, 0)))]
    assert latest.newest(0, KEY) is None, "written: the table has it now"
    assert latest.due(0, 20.0) == []


def test_keys_and_partitions_are_kept_apart() -> None:
    latest = LatestWaiting(tick_seconds=1.0)
    latest.held(0, "a|x", Held("a1"), now=0.0)
    latest.held(0, "b|x", Held("b1"), now=0.1)
    latest.held(1, "c|x", Held("c1"), now=0.1)
    assert latest.unwritten() == 1  # a1 and c1 were each their partition's first write
    assert latest.due(0, 1.0) == [("b|x", Held("b1"))]


def test_a_lost_partition_hands_back_its_unwritten_frames() -> None:
    latest = LatestWaiting(tick_seconds=1.0)
    latest.held(0, KEY, Held("f1", (1, 0)), now=0.0)
    latest.held(0, KEY, Held("f2", (2, 0)), now=0.5)
    latest.held(1, "cam-2|x", Held("g1", (1, 0)), now=0.5)
    assert latest.drop([0, 1, 7]) == {0: [(KEY, Held("f2", (2, 0)))]}
    assert latest.newest(0, KEY) is None and latest.unwritten() == 0


@pytest.mark.parametrize(
    ("newest", "record", "verdict"),
    [
        (Held("f2", (2, 0)), Held("f2", (2, 0)), Verdict.KEEP),
        (Held("f2", (2, 0)), Held("f1", (1, 0)), Verdict.SHED),
        (Held("f2", (2, 3)), Held("f3", (2, 4)), Verdict.ADOPT),  # a stale table: never shed the newer
        (None, Held("f1", (1, 0)), Verdict.ADOPT),  # the table lost the write
        (Held("f2"), Held("f1", (1, 0)), Verdict.SHED),  # a value from before sequences
        (Held("f2", (2, 0)), Held("f1"), Verdict.SHED),  # a record from before sequences
        (Held("f2"), Held("f2"), Verdict.KEEP),
    ],
)
def test_the_drain_verdict(newest: Held | None, record: Held, verdict: Verdict) -> None:
    assert judge(newest, record) is verdict


def test_table_values_of_this_and_earlier_versions_parse() -> None:
    assert parse_held(Held("f1", (4, 2)).value()) == Held("f1", (4, 2))
    assert parse_held(Held("f1").value()) == Held("f1")
    assert parse_held("f1") == Held("f1")
    assert parse_held("") is None and parse_held(None) is None
