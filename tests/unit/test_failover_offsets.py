"""Failover never commits a processor group's offsets backwards."""

from __future__ import annotations

from aiokafka import TopicPartition

from agents.failover import offsets_to_commit

A, B, C = (TopicPartition("frames.ready.p", n) for n in range(3))


def test_ends_at_or_below_the_committed_offsets_are_neither_committed_nor_remembered() -> None:
    moved_to = {A: 100, B: 7_000, C: 40}
    committed = {A: 5_000, B: 6_000, C: 40}

    assert offsets_to_commit(moved_to, committed, {A, B, C}) == {B: 7_000}
    assert moved_to == {B: 7_000}


def test_partitions_without_a_commit_take_the_re_sent_end() -> None:
    moved_to = {A: 3}
    assert offsets_to_commit(moved_to, {}, {A}) == {A: 3}


def test_only_partitions_of_the_topic_watched_now_are_committed() -> None:
    moved_to = {A: 10, B: 10}
    assert offsets_to_commit(moved_to, {}, {A}) == {A: 10}
    assert moved_to == {A: 10, B: 10}
