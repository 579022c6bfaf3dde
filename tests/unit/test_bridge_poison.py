"""Entries the bridge gives up on: bounded dead letters, refusals for good, poison pills."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.errors import (
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    RecordListTooLargeError,
)

from app.configs import bridge_config
from bridge import letters, poison
from bridge.service import Bridge, _InFlight
from bridge.source import Entry
from core.settings import Settings
from frame_buffer_sdk.models import DeadLetter

PRODUCER_LIMIT = 1 << 20


def control_bytes_entry(fields: int = 90, size: int = 16_000) -> dict[str, str]:
    # ~1.4 MB, every character one that JSON writes as a six-byte escape.
    return {f"f{i}": "\x01" * size for i in range(fields)}


def test_a_dead_letter_of_control_bytes_stays_far_below_the_producer_limit() -> None:
    raw = control_bytes_entry()
    assert sum(len(v) for v in raw.values()) > 1_400_000
    record = letters.letter("invalid_field", "bad", "1-0", raw, "f" * 300, "c" * 300)
    size = len(record.model_dump_json().encode())
    assert size < letters.MAX_RAW_BYTES + 16_384 < PRODUCER_LIMIT
    assert "(raw truncated)" in record.detail
    assert record.raw  # evidence is kept, only cut


def test_bounded_raw_counts_multibyte_and_escaped_text_in_bytes() -> None:
    for char in ("\x00", "é", "😀", '"', "\\", "\ud800"):
        evidence, truncated = letters.bounded_raw({"a": char * 20_000, "b": char * 20_000}, max_bytes=10_000)
        encoded = sum(letters.encoded_size(k) + letters.encoded_size(v) + 4 for k, v in evidence.items())
        assert encoded <= 10_000, char
        assert truncated


def test_small_entries_keep_their_evidence_whole() -> None:
    raw = {"frame_id": "f-1", "camera_id": "cam", "note": "é\x01"}
    evidence, truncated = letters.bounded_raw(raw)
    assert evidence == raw
    assert not truncated


def test_only_refusals_of_the_record_itself_are_for_good() -> None:
    assert poison.refused_for_good(MessageSizeTooLargeError())
    assert poison.refused_for_good(RecordListTooLargeError())
    assert not poison.refused_for_good(NotLeaderForPartitionError())
    assert not poison.refused_for_good(KafkaTimeoutError())
    assert not poison.refused_for_good(OSError())


def test_an_entry_is_poison_only_past_the_limit() -> None:
    assert not poison.is_poison(1, 3)
    assert not poison.is_poison(3, 3)
    assert poison.is_poison(4, 3)


def test_poison_letter_keeps_bounded_evidence_without_parsing() -> None:
    entry = Entry(
        "5-0", {b"frame_id": b"f-9", b"camera_id": b"\xff", **{f"x{i}".encode(): b"\x02" * 20_000 for i in range(80)}}
    )
    record = poison.poison_letter(entry, 10)
    assert record.reason == poison.POISON_REASON
    assert record.frame_id == "f-9"
    assert record.stream_id == "5-0"
    assert len(record.model_dump_json().encode()) < PRODUCER_LIMIT


class FakeSink:
    """Records dead letters; every one is acknowledged at once."""

    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    async def send_dead_letter(self, record: DeadLetter) -> asyncio.Future[Any]:
        self.letters.append(record)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result("metadata")
        return future


async def test_frames_refused_for_good_are_replaced_by_their_dead_letters() -> None:
    bridge = Bridge(bridge_config(Settings()), consumer="c", redis=object())  # type: ignore[arg-type]
    sink = FakeSink()
    bridge._sink = sink  # type: ignore[assignment]
    loop = asyncio.get_running_loop()
    entries = [Entry(f"{n}-0", {"frame_id": f"f{n}", "camera_id": "cam"}) for n in range(3)]
    flights = [_InFlight([e.stream_id], loop.create_future(), None) for e in entries]
    results: list[Any] = ["metadata", MessageSizeTooLargeError(), NotLeaderForPartitionError()]

    await bridge._dead_letter_refused(entries, flights, results)

    assert [r.reason for r in sink.letters] == [poison.REFUSED_REASON]
    assert sink.letters[0].stream_id == "1-0" and sink.letters[0].frame_id == "f1"
    assert flights[1].reason == poison.REFUSED_REASON and results[1] == "metadata"
    # A refusal the broker may lift is left to fail the batch, so the entry stays pending.
    assert flights[2].reason is None and isinstance(results[2], NotLeaderForPartitionError)
    assert results[0] == "metadata"


def test_only_deliveries_to_bridges_now_gone_make_a_poison_pill() -> None:
    reads = poison.ReadCounts()
    # This bridge retried its batch 20 times through a broker outage: 21 deliveries, all its own.
    for _ in range(21):
        ours = reads.see("7-0")
    assert poison.elsewhere(21, ours) == 0
    assert not poison.is_poison(poison.elsewhere(21, ours), 10)
    # Eleven bridges before it read the entry and died: this one's first read is the 12th.
    assert poison.is_poison(poison.elsewhere(12, reads.see("8-0")), 10)
    reads.forget(["7-0", "8-0"])
    assert reads.see("7-0") == 1


def test_read_counts_stay_bounded() -> None:
    reads = poison.ReadCounts()
    for n in range(poison.ReadCounts.MAX_TRACKED + 5):
        reads.see(f"{n}-0")
    assert len(reads._reads) <= poison.ReadCounts.MAX_TRACKED


async def test_an_envelope_refused_for_good_dead_letters_each_of_its_entries() -> None:
    bridge = Bridge(bridge_config(Settings()), consumer="c", redis=object())  # type: ignore[arg-type]
    sink = FakeSink()
    bridge._sink = sink  # type: ignore[assignment]
    loop = asyncio.get_running_loop()
    entries = [Entry(f"{n}-0", {"frame_id": f"f{n}", "camera_id": "cam"}) for n in range(3)]
    flights = [_InFlight([e.stream_id for e in entries], loop.create_future(), None)]
    results: list[Any] = [MessageSizeTooLargeError()]

    await bridge._dead_letter_refused(entries, flights, results)

    assert [(r.reason, r.stream_id) for r in sink.letters] == [(poison.REFUSED_REASON, e.stream_id) for e in entries]
    assert flights[0].reason == poison.REFUSED_REASON and flights[0].stream_ids == ["0-0", "1-0", "2-0"]
    assert not isinstance(results[0], BaseException)
