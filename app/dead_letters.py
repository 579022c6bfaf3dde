"""`frame-orchestrator dead-letters list|replay`: read DEAD_LETTER_TOPIC, and route chosen letters again.

A dead letter is named by where it sits, ``<partition>:<offset>`` of DEAD_LETTER_TOPIC.

Replay puts a letter's frame back on CAPTURED_TOPIC (keyed by camera, as the bridge writes it)
for the router to route again. Only letters that carry a whole frame can be: the router's
(``no_capable_processor``, ``shed``, ``too_large``, ...) and the processors' (``processing_failed``,
``pixels_*``, ...), whose ``raw`` is the frame. Letters of records that never were a frame
(``invalid_frame``, a bridge's unparseable entry, ``entry_deleted``, control events) are reported
as not replayable, with why; so is a frame whose pixels have left Redis.

A replayed frame:
- asks only for the letter's capability (the frame's other capabilities were routed already);
- carries ``metadata.replayed_from`` (the letter's id) and ``metadata.rerouted_from`` (the
  processor it failed at, else ``dead-letters``): like a failover's re-route it is not counted
  as captured a second time, is never shed, and passes the router's dedupe;
- carries the header ``x-dead-letter`` (``<dead-letter topic>:<partition>:<offset>``).

Once its frame is acknowledged, each replayed letter gets a marker on
``<DEAD_LETTER_TOPIC>.replayed``, keyed by that header's value; a later replay skips the letters
marked there and says so. A crash between the frame's ack and the marker's leaves the letter
unmarked: it is replayed again next time (at least once). Run one replay at a time.

Reading: with ``--since`` the read starts, in each partition, at the first record stamped at or
after that time (less ``CLOCK_SKEW_SECONDS``), which the broker's time index gives
(ListOffsets by timestamp, ``offsets_for_times``); the markers are read from the oldest chosen
letter's timestamp on, as each marker is stamped no earlier than its letter. A broker without a
time index (Tansu answers the first offset whatever the time) is read from the start, saying
so. Reads end at the fetch highwater, not at ListOffsets' latest (too small on Tansu).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndTimestamp
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from core.settings import Settings
from frame_buffer_sdk.errors import FrameBufferError
from frame_buffer_sdk.kafka import ensure_topics, start_reliable_producer
from frame_buffer_sdk.models import DeadLetter, FrameEvent, utcnow
from frame_buffer_sdk.offsets import seek_to_first
from frame_buffer_sdk.telemetry import trace_headers

log = logging.getLogger(__name__)

REPLAY_HEADER = "x-dead-letter"
REPLAY_SOURCE = "dead-letters"
MARKER_SUFFIX = ".replayed"
# Reading a topic to its end: Tansu's ListOffsets may answer an end below the real one, so the
# read goes on to the fetch highwater and until no record came for this long.
IDLE_SECONDS = 1.0
READ_LIMIT_SECONDS = 120.0
TOPIC_WAIT_SECONDS = 10.0
# A time-bounded read starts this much earlier: records are stamped by their producer's clock
# (or the broker's, with LogAppendTime), a letter's `at` by the clock of the service writing it.
CLOCK_SKEW_SECONDS = 60.0
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# Reasons whose raw is no frame to route again, and why; any other letter is replayable when its
# raw holds a valid frame.
NOT_FRAMES = {
    "invalid_frame": "the captured record was not a valid frame",
    "invalid_routed_frame": "the record on the processor's topic was not a routed frame",
    "entry_deleted": "the stream entry was trimmed before the bridge read it; its content is gone",
    "invalid_control_event": "a control event, not a frame",
    "unknown_processor": "a control event, not a frame",
}


class DeadLetterError(FrameBufferError):
    """A bad option or an unreachable Kafka/Redis: exit non-zero with the message."""


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """An ISO 8601 time (naive: UTC) or a time ago: ``30s``, ``10m``, ``2h``, ``1d``, ``1w``."""
    now = now or utcnow()
    relative = _RELATIVE.match(text)
    if relative:
        return now - timedelta(seconds=float(relative.group(1)) * _UNITS[relative.group(2)])
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise DeadLetterError(f"{text!r} is neither an ISO time nor a time ago like 10m, 2h, 1d") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class LetterFilter:
    reasons: frozenset[str] = frozenset()
    cameras: frozenset[str] = frozenset()
    ids: frozenset[str] = frozenset()
    since: datetime | None = None
    until: datetime | None = None

    @property
    def empty(self) -> bool:
        return not (self.reasons or self.cameras or self.ids or self.since or self.until)

    def matches(self, stored: StoredLetter) -> bool:
        letter = stored.letter
        if self.ids and stored.id not in self.ids:
            return False
        if self.reasons and letter.reason not in self.reasons:
            return False
        if self.cameras and letter.camera_id not in self.cameras:
            return False
        if self.since is not None and letter.at < self.since:
            return False
        return not (self.until is not None and letter.at > self.until)


@dataclass
class StoredLetter:
    """One dead letter as it sits in the topic."""

    topic: str
    partition: int
    offset: int
    letter: DeadLetter
    key: str = ""
    timestamp: int = -1  # the record's, in ms; -1 when unknown

    @property
    def id(self) -> str:
        return f"{self.partition}:{self.offset}"

    @property
    def ref(self) -> str:
        """Its name across topics: the marker key and the replayed record's header."""
        return f"{self.topic}:{self.partition}:{self.offset}"

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "topic": self.topic, "key": self.key, **self.letter.model_dump(mode="json")}


@dataclass
class Outcome:
    replayed: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    not_replayable: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"replayed": self.replayed, "already_replayed": self.skipped, "not_replayable": self.not_replayable}


def marker_topic(settings: Settings) -> str:
    return f"{settings.dead_letter_topic}{MARKER_SUFFIX}"


@dataclass
class Read:
    records: list[Any]
    # Whether the start came from a broker's time index that honoured the time; False: read from
    # the beginning, or from an answer older than the time (Tansu's first offset).
    from_time_index: bool = False


async def read_records(
    settings: Settings,
    topic: str,
    *,
    since_ms: int | None = None,
    idle_seconds: float = IDLE_SECONDS,
    limit_seconds: float = READ_LIMIT_SECONDS,
) -> list[Any]:
    """Every record of ``topic`` (from ``since_ms`` on, when given) to its end; [] when the topic
    does not exist."""
    read = await read_topic(settings, topic, since_ms=since_ms, idle_seconds=idle_seconds, limit_seconds=limit_seconds)
    return read.records


async def read_topic(
    settings: Settings,
    topic: str,
    *,
    since_ms: int | None = None,
    idle_seconds: float = IDLE_SECONDS,
    limit_seconds: float = READ_LIMIT_SECONDS,
) -> Read:
    """read_records, saying where the read started. ``since_ms`` bounds the start only: records
    stamped before it may still come (after a later one, or from a broker without a time index),
    so callers filter."""
    consumer = AIOKafkaConsumer(
        **settings.kafka_security.client_kwargs(),
        bootstrap_servers=settings.bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id=f"{settings.app_id}-dead-letters",
    )
    try:
        await consumer.start()
    except Exception as exc:
        await consumer.stop()
        raise DeadLetterError(f"cannot reach Kafka at {settings.bootstrap_servers}: {exc}") from None
    try:
        partitions = consumer.partitions_for_topic(topic)
        if partitions is None and topic in await consumer.topics():
            partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            return Read([])
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        starts: dict[TopicPartition, int | None] | None = None
        if since_ms is None:
            seek_to_first(consumer, tps)
        else:
            starts = await seek_since(consumer, tps, since_ms)
        records: list[Any] = []
        started = last = time.monotonic()
        while time.monotonic() - started < limit_seconds:
            batch = await consumer.getmany(*tps, timeout_ms=300, max_records=5000)
            for messages in batch.values():
                records.extend(messages)
            now = time.monotonic()
            if batch:
                last = now
                continue
            if now - last >= idle_seconds and await _at_end(consumer, tps):
                break
        else:
            raise DeadLetterError(f"reading {topic} did not reach its end within {limit_seconds:.0f} s")
        records.sort(key=lambda r: (r.partition, r.offset))
        indexed = starts is not None and since_ms is not None and _started_at_time(records, starts, since_ms)
        if since_ms is not None and starts is not None and not indexed:
            log.warning(
                "%s: ListOffsets by timestamp answered an offset stamped before the time (Tansu answers the "
                "first offset), so the whole of it was read",
                topic,
            )
        return Read(records, indexed)
    finally:
        await consumer.stop()


def time_index_starts(
    since_ms: int, answers: dict[TopicPartition, OffsetAndTimestamp | None]
) -> dict[TopicPartition, int | None] | None:
    """Per partition, the first offset stamped at or after ``since_ms`` (None: no such record,
    start at the end), from the broker's ListOffsets-by-time answers; None when the answers
    show the broker ignored the time (an answer stamped before it, or unstamped, as Tansu's)."""
    starts: dict[TopicPartition, int | None] = {}
    for tp, answer in answers.items():
        if answer is None:
            starts[tp] = None
        elif answer.timestamp < since_ms or answer.offset < 0:
            return None
        else:
            starts[tp] = answer.offset
    return starts


def _started_at_time(records: list[Any], starts: dict[TopicPartition, int | None], since_ms: int) -> bool:
    """Whether the first record read at each answered offset is stamped at or after ``since_ms``,
    as a real time index's answer is. Tansu answers offset 0 with a recent stamp whatever is
    there: what it gives is a start from the beginning, and so is read."""
    first: dict[TopicPartition, Any] = {}
    for record in records:
        first.setdefault(TopicPartition(record.topic, record.partition), record)
    return all(
        tp not in first or first[tp].offset != offset or first[tp].timestamp >= since_ms
        for tp, offset in starts.items()
        if offset is not None
    )


async def seek_since(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], since_ms: int
) -> dict[TopicPartition, int | None] | None:
    """Position ``tps`` at their first record stamped at or after ``since_ms``; returns the
    broker's time-index starts (see time_index_starts), or None when it gave none and they are
    at the start."""
    try:
        answers = await consumer.offsets_for_times({tp: since_ms for tp in tps})
    except KafkaError as exc:  # UnsupportedVersionError: a broker before 0.10.1
        answers, why = {}, f"refused ({exc!r})"
    else:
        why = "ignored the time (e.g. Tansu)"
    starts = time_index_starts(since_ms, answers) if answers else None
    if starts is None:
        log.warning(
            "%s: the broker's ListOffsets by timestamp %s; reading from the start", tps[0].topic if tps else "", why
        )
        seek_to_first(consumer, tps)
        return None
    at_end = [tp for tp, offset in starts.items() if offset is None]
    if at_end:
        await consumer.seek_to_end(*at_end)
    for tp, offset in starts.items():
        if offset is not None:
            consumer.seek(tp, offset)
    return starts


async def _at_end(consumer: AIOKafkaConsumer, tps: Iterable[TopicPartition]) -> bool:
    """Every partition read up to the highwater of its last fetch (known once a fetch answered)."""
    for tp in tps:
        highwater = consumer.highwater(tp)
        if highwater is None or await consumer.position(tp) < highwater:
            return False
    return True


def decode(record: Any) -> StoredLetter | None:
    try:
        letter = DeadLetter.model_validate_json(record.value or b"")
    except ValidationError:
        return None
    key = (record.key or b"").decode("utf-8", "backslashreplace")
    return StoredLetter(record.topic, record.partition, record.offset, letter, key, record.timestamp)


async def list_letters(settings: Settings, chosen: LetterFilter) -> list[StoredLetter]:
    """The dead letters that pass ``chosen``, oldest offset first per partition."""
    since_ms = _ms(chosen.since.timestamp() - CLOCK_SKEW_SECONDS) if chosen.since else None
    letters = (decode(r) for r in await read_records(settings, settings.dead_letter_topic, since_ms=since_ms))
    return [s for s in letters if s is not None and chosen.matches(s)]


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def markers_since(letters: list[StoredLetter]) -> int | None:
    """Where the markers of ``letters`` start: each marker is stamped no earlier than its letter
    (see _send), so at the oldest letter's stamp, less the skew of markers written before that
    rule; None (all of them) when a letter's stamp is unknown."""
    stamps = [s.timestamp for s in letters]
    if not stamps or min(stamps) < 0:
        return None
    return min(stamps) - _ms(CLOCK_SKEW_SECONDS)


async def replayed_refs(settings: Settings, since_ms: int | None = None) -> dict[str, dict[str, Any]]:
    """The letters replayed before (their markers stamped from ``since_ms`` on): ref -> the marker's content."""
    found: dict[str, dict[str, Any]] = {}
    for record in await read_records(settings, marker_topic(settings), since_ms=since_ms):
        if record.key is None or record.value is None:
            continue
        try:
            found[record.key.decode()] = json.loads(record.value)
        except (UnicodeDecodeError, ValueError):
            continue
    return found


def replay_frame(stored: StoredLetter) -> tuple[FrameEvent | None, str]:
    """The frame to route again, or None and why it cannot be."""
    letter = stored.letter
    if letter.reason in NOT_FRAMES:
        return None, NOT_FRAMES[letter.reason]
    candidates = [letter.raw]
    if isinstance(letter.raw.get("frame"), dict):  # migrated v1 letters keep the frame under "frame"
        candidates.append(letter.raw["frame"])
    frame = None
    for raw in candidates:
        try:
            frame = FrameEvent.model_validate(raw)
            break
        except ValidationError:
            continue
    if frame is None:
        return None, "the dead letter carries no whole frame to route (only evidence of what was received)"
    capabilities = [letter.capability] if letter.capability else frame.capabilities
    if not capabilities:
        return None, "the frame asks for no capability"
    metadata = {
        **frame.metadata,
        "replayed_from": stored.ref,
        "rerouted_from": letter.processor_id or REPLAY_SOURCE,
    }
    return frame.model_copy(update={"capabilities": capabilities, "metadata": metadata}), ""


async def _missing_pixels(settings: Settings, frames: list[FrameEvent]) -> set[str]:
    """frame_keys of ``frames`` no longer in Redis."""
    keys = sorted({f.frame_key for f in frames if f.frame_key})
    if not keys:
        return set()
    client = settings.redis.client(socket_timeout=5, socket_connect_timeout=5)
    try:
        async with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.exists(key)
            found = await pipe.execute()
    except Exception as exc:
        raise DeadLetterError(f"cannot check pixels in Redis ({exc}); pass --no-pixel-check to skip") from None
    finally:
        await client.aclose()
    return {key for key, exists in zip(keys, found, strict=True) if not exists}


def _summary(stored: StoredLetter, **extra: Any) -> dict[str, Any]:
    letter = stored.letter
    return {
        "id": stored.id,
        "reason": letter.reason,
        "frame_id": letter.frame_id,
        "camera_id": letter.camera_id,
        "capability": letter.capability,
        **extra,
    }


async def replay(
    settings: Settings, chosen: LetterFilter, *, dry_run: bool = False, check_pixels: bool = True
) -> Outcome:
    """Route the chosen dead letters again, each once; see the module's docstring."""
    letters = await list_letters(settings, chosen)
    done = await replayed_refs(settings, markers_since(letters)) if letters else {}
    outcome = Outcome()
    replayable: list[tuple[StoredLetter, FrameEvent]] = []
    for stored in letters:
        if stored.ref in done:
            outcome.skipped.append(_summary(stored, replayed_at=done[stored.ref].get("replayed_at")))
            continue
        frame, why = replay_frame(stored)
        if frame is None:
            outcome.not_replayable.append(_summary(stored, why=why))
        else:
            replayable.append((stored, frame))
    if check_pixels and replayable:
        gone = await _missing_pixels(settings, [frame for _, frame in replayable])
        for stored, frame in [item for item in replayable if item[1].frame_key in gone]:
            why = f"its pixels are no longer in Redis (key {frame.frame_key!r}); the processor would drop it again"
            outcome.not_replayable.append(_summary(stored, why=why))
        replayable = [item for item in replayable if item[1].frame_key not in gone]
    if dry_run or not replayable:
        outcome.replayed = [_summary(stored, dry_run=True) for stored, _ in replayable] if dry_run else []
        return outcome
    await _send(settings, replayable, outcome)
    return outcome


async def _send(settings: Settings, replayable: list[tuple[StoredLetter, FrameEvent]], outcome: Outcome) -> None:
    security = settings.kafka_security
    markers = marker_topic(settings)
    try:
        await ensure_topics(
            settings.bootstrap_servers,
            [(markers, 1), (settings.captured_topic, settings.captured_partitions)],
            settings.topic_replication_factor,
            security=security,
        )
        producer = await start_reliable_producer(
            settings.bootstrap_servers, f"{settings.app_id}-dead-letter-replay", security=security
        )
    except Exception as exc:
        raise DeadLetterError(f"cannot reach Kafka at {settings.bootstrap_servers}: {exc}") from None
    try:
        sends = []
        for stored, frame in replayable:
            headers = [*trace_headers(frame.traceparent, frame.tracestate), (REPLAY_HEADER, stored.ref.encode())]
            sends.append(
                await producer.send(
                    settings.captured_topic,
                    key=frame.camera_id.encode(),
                    value=frame.model_dump_json().encode(),
                    headers=headers,
                )
            )
        delivered = await asyncio.gather(*sends)
        # Markers only once every frame is acknowledged: a letter is never marked but not replayed.
        now = utcnow().isoformat()
        marks = []
        for (stored, _), meta in zip(replayable, delivered, strict=True):
            marker = {
                "dead_letter": stored.ref,
                "reason": stored.letter.reason,
                "frame_id": stored.letter.frame_id,
                "replayed_at": now,
                "captured_topic": settings.captured_topic,
                "captured_partition": meta.partition,
                "captured_offset": meta.offset,
            }
            # Never stamped before its letter, whatever the clocks: markers_since relies on it.
            stamp = max(_ms(time.time()), stored.timestamp)
            marks.append(
                await producer.send(
                    markers, key=stored.ref.encode(), value=json.dumps(marker).encode(), timestamp_ms=stamp
                )
            )
            outcome.replayed.append(_summary(stored, partition=meta.partition, offset=meta.offset))
        await asyncio.gather(*marks)
    finally:
        await producer.stop()


# --- output --------------------------------------------------------------------------


def letters_table(letters: list[StoredLetter], width: int = 160) -> str:
    table = Table(title=f"{len(letters)} dead letter(s)", title_justify="left")
    for column in ("ID", "AT", "REASON", "CAMERA", "FRAME", "CAPABILITY", "PROCESSOR", "DETAIL"):
        table.add_column(column, overflow="fold")
    for s in letters:
        letter = s.letter
        table.add_row(
            s.id,
            letter.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            letter.reason,
            letter.camera_id or "-",
            letter.frame_id or "-",
            letter.capability or "-",
            letter.processor_id or "-",
            letter.detail[:120],
        )
    return _printed(table, width)


def outcome_text(outcome: Outcome, dry_run: bool = False) -> str:
    verb = "would replay" if dry_run else "replayed"
    lines = [f"{verb} {len(outcome.replayed)} dead letter(s)"]
    lines += [f"  {r['id']} {r['reason']} frame {r['frame_id']} ({r['capability']})" for r in outcome.replayed]
    if outcome.skipped:
        lines.append(f"skipped {len(outcome.skipped)} already replayed:")
        lines += [f"  {r['id']} {r['reason']} frame {r['frame_id']} at {r['replayed_at']}" for r in outcome.skipped]
    if outcome.not_replayable:
        lines.append(f"{len(outcome.not_replayable)} not replayable:")
        lines += [f"  {r['id']} {r['reason']}: {r['why']}" for r in outcome.not_replayable]
    return "\n".join(lines)


def _printed(renderable: Any, width: int) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None).print(renderable)
    return buffer.getvalue()
