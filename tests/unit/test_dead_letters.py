"""Dead letters: time filters, which letters carry a frame to replay, and what the replay sends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.dead_letters import (
    REPLAY_SOURCE,
    DeadLetterError,
    LetterFilter,
    StoredLetter,
    letters_table,
    parse_time,
    replay_frame,
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
