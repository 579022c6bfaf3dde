"""Counting entries trimmed unread, and where the acknowledged prefix ends. Pure."""

from __future__ import annotations

from bridge.trim import StreamState, gap_ahead, next_id, trim_point


def state(added: int, length: int, read: int | None, delivered: str, first: str | None) -> StreamState:
    return StreamState(entries_added=added, length=length, entries_read=read, last_delivered=delivered, first_id=first)


def test_entries_trimmed_ahead_of_a_group_that_read_nothing_are_a_gap() -> None:
    # 300 added while the bridge was down, MAXLEN 100 kept the last 100.
    assert gap_ahead(state(300, 100, None, "0-0", "201-0")) == 200


def test_a_gap_after_entries_already_read_counts_only_the_unread_ones() -> None:
    # The group read 50 (up to 50-0), then 250 more came and MAXLEN kept 100 of them.
    assert gap_ahead(state(300, 100, 50, "50-0", "201-0")) == 150


def test_no_gap_while_the_next_entry_is_still_there() -> None:
    assert gap_ahead(state(300, 100, 250, "250-0", "201-0")) == 0
    assert gap_ahead(state(300, 0, 300, "300-0", None)) == 0
    assert gap_ahead(state(300, 100, None, "150-0", "201-0")) is None, "where the group stands is unknown"


def test_the_trim_point_keeps_every_groups_oldest_pending_entry() -> None:
    assert next_id("5-3") == "5-4"
    assert trim_point([]) is None
    assert trim_point([("9-0", None)]) == "9-1"
    assert trim_point([("9-0", "4-2")]) == "4-2"
    assert trim_point([("9-0", None), ("3-7", None)]) == "3-8", "the slowest group decides"
