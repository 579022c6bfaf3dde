"""Dead letters: time filters, which letters carry a frame to replay, and what the replay sends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import UnsupportedVersionError
from aiokafka.structs import OffsetAndTimestamp

from app.dead_letters import (
    CLOCK_SKEW_SECONDS,
    REPLAY_SOURCE,
    DeadLetterError,
    LetterFilter,
    StoredLetter,
    _started_at_time,
    letters_table,
    markers_since,
    parse_time,
    replay_frame,
    seek_since,
    time_index_starts,
)
from core.deadletter import frame_letter
from frame_buffer_sdk.models import DeadLetter, FrameEvent, RoutedFrame

NOW = datetime(2025, 1, 2, 12, 0, tzinfo=UTC)


def _frame(**extra: object) -> FrameEvent:
    values: dict[str, object] = {
        "frame_id": "f-1",
        "camera_id": "cam-1",
        "captured_at": NOW,
        "capabilities": ["detect", "ocr"],
        "frame_key": "frame:f-1",
    }
    values.update(extra)
    return FrameEvent.model_validate(values)


def _stored(letter: DeadLetter, offset: int = 7) -> StoredLetter:
    return StoredLetter("frames.dead-letter", 1, offset, letter)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10m", NOW - timedelta(minutes=10)),
        ("30s", NOW - timedelta(seconds=30)),
        ("2h", NOW - timedelta(hours=2)),
        ("1.5d", NOW - timedelta(hours=36)),
        ("1w", NOW - timedelta(days=7)),
        ("2025-01-01T10:00:00+01:00", datetime(2025, 1, 1, 9, 0, tzinfo=UTC)),
        ("2025-01-01T10:00:00Z", datetime(2025, 1, 1, 10, 0, tzinfo=UTC)),
        ("2025-01-01 10:00", datetime(2025, 1, 1, 10, 0, tzinfo=UTC)),  # naive: UTC
    ],
)
def test_parse_time(text: str, expected: datetime) -> None:
    assert parse_time(text, NOW) == expected


def test_parse_time_refuses_nonsense() -> None:
    with pytest.raises(DeadLetterError, match="ISO time"):
        parse_time("yesterday", NOW)


def test_filter_matches_every_given_condition() -> None:
    letter = DeadLetter(reason="no_processor", detail="", camera_id="cam-1", at=NOW)
    stored = _stored(letter)
    assert LetterFilter().matches(stored) and LetterFilter().empty
    assert LetterFilter(reasons=frozenset({"no_processor", "shed"}), cameras=frozenset({"cam-1"})).matches(stored)
    assert not LetterFilter(reasons=frozenset({"shed"})).matches(stored)
    assert not LetterFilter(cameras=frozenset({"cam-2"})).matches(stored)
    assert LetterFilter(since=NOW - timedelta(seconds=1), until=NOW).matches(stored)
    assert not LetterFilter(since=NOW + timedelta(seconds=1)).matches(stored)
    assert not LetterFilter(until=NOW - timedelta(seconds=1)).matches(stored)
    assert LetterFilter(ids=frozenset({"1:7"})).matches(stored)
    assert not LetterFilter(ids=frozenset({"1:8"})).matches(stored)


def test_a_routers_letter_replays_its_frame_for_its_capability_only() -> None:
    _, value = frame_letter("no_processor", "nobody offers 'ocr'", _frame(), capability="ocr")
    stored = _stored(DeadLetter.model_validate_json(value))
    frame, why = replay_frame(stored)
    assert frame is not None and why == ""
    assert frame.frame_id == "f-1" and frame.capabilities == ["ocr"]
    assert frame.metadata == {"replayed_from": "frames.dead-letter:1:7", "rerouted_from": REPLAY_SOURCE}


def test_a_processors_letter_replays_the_routed_frame_marked_as_moved_off_that_processor() -> None:
    routed = RoutedFrame.model_validate(
        {**_frame().model_dump(), "processor_id": "det-a", "capability": "detect", "routed_at": NOW}
    )
    letter = DeadLetter(
        reason="processing_failed",
        detail="boom",
        frame_id="f-1",
        camera_id="cam-1",
        capability="detect",
        processor_id="det-a",
        raw=routed.model_dump(mode="json"),
        source="processor",
    )
    frame, _ = replay_frame(_stored(letter))
    assert frame is not None and frame.capabilities == ["detect"]
    assert frame.metadata["rerouted_from"] == "det-a"
    assert "processor_id" not in frame.model_dump()


@pytest.mark.parametrize(
    ("letter", "why"),
    [
        (DeadLetter(reason="invalid_frame", detail="", raw={"key": "k", "value": "{"}), "not a valid frame"),
        (DeadLetter(reason="entry_deleted", detail="", stream_id="1-0"), "content is gone"),
        (DeadLetter(reason="unknown_processor", detail="", raw={"key": "p", "value": "{}"}), "control event"),
        (DeadLetter(reason="bad_timestamp", detail="", raw={"camera_id": "c", "ts": "x"}), "no whole frame"),
    ],
)
def test_letters_without_a_frame_are_not_replayable(letter: DeadLetter, why: str) -> None:
    frame, reason = replay_frame(_stored(letter))
    assert frame is None and why in reason


def test_a_migrated_v1_letter_with_a_valid_frame_replays_it() -> None:
    letter = DeadLetter(reason="v1_timeout", detail="", raw={"frame": _frame().model_dump(mode="json")})
    frame, _ = replay_frame(_stored(letter))
    assert frame is not None and frame.capabilities == ["detect", "ocr"]


def test_table_lists_the_letters() -> None:
    letter = DeadLetter(reason="no_processor", detail="nobody", camera_id="cam-1", frame_id="f-1", at=NOW)
    text = letters_table([_stored(letter)])
    assert "1 dead letter(s)" in text and "1:7" in text and "no_processor" in text and "2025-01-02 12:00:00" in text


# --- where a --since read starts ----------------------------------------------------------------

TP0, TP1 = TopicPartition("dl", 0), TopicPartition("dl", 1)
SINCE_MS = 1_700_000_000_000


def test_time_index_answers_give_each_partitions_start() -> None:
    answers = {TP0: OffsetAndTimestamp(42, SINCE_MS + 5), TP1: None}
    # TP1 has no record at or after the time (Kafka's answer): its read starts at its end.
    assert time_index_starts(SINCE_MS, answers) == {TP0: 42, TP1: None}


@pytest.mark.parametrize(
    "answer",
    [OffsetAndTimestamp(0, SINCE_MS - 86_400_000), OffsetAndTimestamp(0, -1)],
    ids=["stamped-before", "unstamped"],
)
def test_an_answer_that_ignores_the_time_means_no_time_index(answer: OffsetAndTimestamp) -> None:
    # Tansu answers the first offset (stamped with its own, older time, or -1 on an empty partition).
    assert time_index_starts(SINCE_MS, {TP0: OffsetAndTimestamp(3, SINCE_MS), TP1: answer}) is None


class _Consumer:
    """What seek_since calls of an AIOKafkaConsumer, recorded (the broker's answers given)."""

    def __init__(self, answers: dict[TopicPartition, OffsetAndTimestamp | None] | Exception) -> None:
        self.answers = answers
        self.calls: list[tuple[str, object]] = []

    async def offsets_for_times(self, query: dict[TopicPartition, int]) -> object:
        self.calls.append(("offsets_for_times", dict(query)))
        if isinstance(self.answers, Exception):
            raise self.answers
        return self.answers

    async def seek_to_end(self, *tps: TopicPartition) -> None:
        self.calls.append(("end", set(tps)))

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.calls.append(("seek", (tp, offset)))


async def test_seek_since_starts_where_the_time_index_says() -> None:
    consumer = _Consumer({TP0: OffsetAndTimestamp(42, SINCE_MS + 5), TP1: None})
    assert await seek_since(consumer, [TP0, TP1], SINCE_MS) == {TP0: 42, TP1: None}  # type: ignore[arg-type]
    assert consumer.calls == [
        ("offsets_for_times", {TP0: SINCE_MS, TP1: SINCE_MS}),
        ("end", {TP1}),
        ("seek", (TP0, 42)),
    ]


@pytest.mark.parametrize(
    "answers",
    [{TP0: OffsetAndTimestamp(0, SINCE_MS - 1), TP1: OffsetAndTimestamp(0, -1)}, UnsupportedVersionError()],
    ids=["ignored", "unsupported"],
)
async def test_seek_since_falls_back_to_the_start(
    answers: dict[TopicPartition, OffsetAndTimestamp | None] | Exception,
) -> None:
    consumer = _Consumer(answers)
    assert await seek_since(consumer, [TP0, TP1], SINCE_MS) is None  # type: ignore[arg-type]
    # Offset 0, not the broker's earliest offset (Tansu may answer it past a first batch).
    assert consumer.calls[-2:] == [("seek", (TP0, 0)), ("seek", (TP1, 0))]


def test_markers_are_read_from_the_oldest_chosen_letters_stamp() -> None:
    letter = DeadLetter(reason="shed", detail="x")
    letters = [StoredLetter("dl", 0, n, letter, timestamp=SINCE_MS + n) for n in (5, 2, 9)]
    assert markers_since(letters) == SINCE_MS + 2 - int(CLOCK_SKEW_SECONDS * 1000)
    assert markers_since([*letters, StoredLetter("dl", 0, 1, letter)]) is None  # a stamp unknown: all markers
    assert markers_since([]) is None


def test_a_start_is_from_the_time_index_only_when_its_record_is_stamped_from_then() -> None:
    def record(offset: int, stamp: int) -> SimpleNamespace:
        return SimpleNamespace(topic="dl", partition=0, offset=offset, timestamp=stamp)

    starts: dict[TopicPartition, int | None] = {TP0: 3, TP1: None}
    assert _started_at_time([record(3, SINCE_MS), record(4, SINCE_MS - 5)], starts, SINCE_MS)
    # Tansu: offset 0 answered with a recent stamp, but the record there is two days old.
    assert not _started_at_time([record(0, SINCE_MS - 172_800_000)], {TP0: 0}, SINCE_MS)
    assert _started_at_time([], starts, SINCE_MS)
