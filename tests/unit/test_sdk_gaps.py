"""The SDK's guard against fetches whose offsets jump ahead (frame_buffer_sdk.gaps)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from frame_buffer_sdk.gaps import GapGuard


@dataclass(frozen=True)
class _R:
    offset: int


def _part(start: int, stop: int) -> list[_R]:
    return [_R(n) for n in range(start, stop)]


def test_records_past_a_gap_are_left_out_and_fetched_again_from_it() -> None:
    guard: GapGuard[str] = GapGuard()
    assert guard.contiguous("p0", _part(0, 5)) == (_part(0, 5), None)
    kept, again = guard.contiguous("p0", [*_part(5, 7), *_part(9, 12)])
    assert (list(kept), again) == (_part(5, 7), 7)
    # The fetch again brings the missing records: the partition goes on.
    assert guard.contiguous("p0", _part(7, 12)) == (_part(7, 12), None)
    assert guard.accepted == 0


def test_a_gap_that_stays_is_given_up_on_after_the_retries_and_counted() -> None:
    guard: GapGuard[str] = GapGuard(retries=2)
    guard.contiguous("p0", _part(0, 3))
    assert guard.contiguous("p0", _part(10, 12))[1] == 3
    assert guard.contiguous("p0", _part(10, 12))[1] == 3
    assert guard.contiguous("p0", _part(10, 12)) == (_part(10, 12), None)
    assert guard.accepted == 7
    # A later, different gap gets its own retries.
    assert guard.contiguous("p0", _part(20, 21))[1] == 12


def test_an_assignment_or_a_rewind_sets_what_comes_next() -> None:
    guard: GapGuard[str] = GapGuard()
    guard.contiguous("p0", _part(0, 10))
    guard.reset(["p0"])  # assigned again: the committed offset may be anywhere
    assert guard.contiguous("p0", _part(50, 52)) == (_part(50, 52), None)
    guard.rewound("p0", 50)  # the batch failed and is fetched again
    assert guard.contiguous("p0", _part(50, 52)) == (_part(50, 52), None)
    guard.rewound("p0", 40)
    assert guard.contiguous("p0", _part(45, 46))[1] == 40
    # Partitions are apart.
    assert guard.contiguous("p1", _part(7, 8)) == (_part(7, 8), None)


def test_negative_retries_are_refused() -> None:
    with pytest.raises(ValueError, match="retries"):
        GapGuard(retries=-1)


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(1, 20)), max_size=30), st.integers(0, 1000))
def test_fetches_that_never_skip_ahead_are_never_cut(steps: list[tuple[int, int]], start: int) -> None:
    """Each fetch starts at, or before (a replay), the next offset expected: nothing is cut."""
    guard: GapGuard[str] = GapGuard()
    expected = start
    for back, size in steps:
        first = max(start, expected - back)
        part = _part(first, first + size)
        assert guard.contiguous("p", part) == (part, None)
        expected = max(expected, first + size)
    assert guard.accepted == 0


@given(st.integers(0, 100), st.integers(1, 50), st.integers(1, 50))
def test_every_skip_ahead_is_caught(start: int, size: int, skip: int) -> None:
    guard: GapGuard[str] = GapGuard()
    guard.contiguous("p", _part(start, start + size))
    kept, again = guard.contiguous("p", _part(start + size + skip, start + size + skip + 3))
    assert (list(kept), again) == ([], start + size)
