"""What a migration from v1 will do, decided from a snapshot of the state. Pure: no I/O.

``plan`` turns a ``Snapshot`` (read by ``migrate.state``) into a ``Plan`` (carried out by
``migrate.apply``), and ``report`` words a plan the same way for a dry run and a real one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from frame_buffer_sdk.models import DeadLetter, ProcessorSpec
from migrate.v1 import NotImportable, V1Names, dead_letter, processor_spec, replay_fields

# Where an empty group starts: every entry of the stream is new to it.
FROM_START = "0"
# A v1 consumer that read more recently than this may still be running.
V1_ACTIVE_MS = 10_000


@dataclass(frozen=True, slots=True)
class V1Group:
    last_delivered: str
    pending: tuple[str, ...]  # delivered to v1, never acknowledged, still in the stream
    pending_gone: tuple[str, ...] = ()  # pending in v1 but trimmed or deleted from the stream
    idle_ms: int | None = None  # since the most recent read of any v1 consumer; None: it has none


@dataclass(frozen=True, slots=True)
class Marker:
    """Progress of earlier runs, kept in Redis so a second run does nothing and a broken one resumes."""

    finished_at: str | None = None
    group_done: bool = False
    registry_done: bool = False
    dlq_through: str | None = None  # last frame_dlq id already converted


@dataclass(frozen=True, slots=True)
class Snapshot:
    stream: str
    group: str  # ours
    names: V1Names
    v1_group: V1Group | None
    our_group_exists: bool
    queue: tuple[tuple[str, dict[str, str]], ...]
    dlq: tuple[tuple[str, dict[str, str]], ...]  # only those after marker.dlq_through
    registry: tuple[tuple[str, str], ...]
    marker: Marker = Marker()


@dataclass(frozen=True, slots=True)
class GroupStep:
    start_id: str  # XGROUP CREATE id: entries after it are new to our group
    handover: tuple[str, ...]  # v1's pending entries, put in our group's pending list


@dataclass(frozen=True, slots=True)
class Skip:
    what: str
    why: str


@dataclass(frozen=True, slots=True)
class Plan:
    group: GroupStep | None
    replays: tuple[tuple[str, dict[str, str]], ...]
    dead_letters: tuple[DeadLetter, ...]
    processors: tuple[ProcessorSpec, ...]
    skipped: tuple[Skip, ...] = ()
    already_done: str | None = None  # when the migration finished before
    notes: tuple[str, ...] = field(default=())

    @property
    def changes_nothing(self) -> bool:
        return not (self.group or self.replays or self.dead_letters or self.processors)


def _group_step(snap: Snapshot) -> tuple[GroupStep | None, list[Skip], list[str]]:
    if snap.marker.group_done:
        return None, [], [f"group {snap.group} was positioned by an earlier, interrupted run"]
    if snap.our_group_exists:
        why = "it exists already (did a bridge run before the migration?); left where it is"
        return None, [Skip(f"positioning group {snap.group}", why)], []
    v1 = snap.v1_group
    if v1 is None:
        note = f"v1 group {snap.names.group} not found on {snap.stream}: our group reads the stream from its start"
        return GroupStep(FROM_START, ()), [], [note]
    skips = [
        Skip(f"v1 pending entry {sid}", "no longer in the stream (trimmed or deleted): its content is gone")
        for sid in v1.pending_gone
    ]
    notes = []
    if v1.idle_ms is not None and v1.idle_ms < V1_ACTIVE_MS:
        notes.append(
            f"a v1 consumer read {v1.idle_ms / 1000:.1f} s ago: if v1 still runs, the entries it reads"
            " from now on reach processors on both sides (stop v1 before migrating)"
        )
    # Ours starts where v1's reading stopped, and what v1 read but never acknowledged is handed
    # over as pending: each such entry once, and none v1 acknowledged, however they interleave.
    return GroupStep(v1.last_delivered, v1.pending), skips, notes


def plan(snap: Snapshot) -> Plan:
    if snap.marker.finished_at is not None:
        return Plan(None, (), (), (), already_done=snap.marker.finished_at)
    group, skipped, notes = _group_step(snap)
    replays = tuple((sid, replay_fields(sid, fields)) for sid, fields in snap.queue)
    letters = tuple(dead_letter(sid, fields, snap.names.dlq) for sid, fields in snap.dlq)
    if snap.marker.dlq_through is not None:
        notes.append(f"{snap.names.dlq} entries up to {snap.marker.dlq_through} were converted by an earlier run")
    processors: list[ProcessorSpec] = []
    if not snap.marker.registry_done:
        for pid, value in snap.registry:
            try:
                processors.append(processor_spec(pid, value))
            except NotImportable as exc:
                skipped.append(Skip(f"processor {pid!r:.80}", str(exc)))
    return Plan(group, replays, letters, tuple(processors), tuple(skipped), None, tuple(notes))


def report(p: Plan, snap: Snapshot, dry_run: bool) -> str:
    """The lines ``migrate`` prints: the same for a dry run (in the conditional) and a real one."""
    if p.already_done is not None:
        return f"already migrated from v1 (finished {p.already_done}): nothing to do, nothing changed"

    def done(past: str) -> str:
        return f"would be {past}" if dry_run else past

    lines = [f"migration from frame-buffer v1{' (dry run: nothing changed)' if dry_run else ''}:"]
    if p.group is not None:
        lines.append(
            f"  group {snap.group} on {snap.stream} {done('created')}, reading after {p.group.start_id};"
            f" {len(p.group.handover)} entries v1 read but never acknowledged {done('handed')} to it as pending"
        )
    unparsed = sum(1 for letter in p.dead_letters if isinstance(letter.raw.get("frame"), str))
    lines += [
        f"  {snap.names.queue}: {len(p.replays)} frames {done('replayed')} into {snap.stream}"
        " and removed from the queue",
        f"  {snap.names.dlq}: {len(p.dead_letters)} dead letters {done('converted')}"
        f" ({unparsed} unparseable, kept as raw text)",
        f"  {snap.names.registry}: {len(p.processors)} processors {done('registered')} (healthy once they heartbeat)",
    ]
    lines += [f"  note: {note}" for note in p.notes]
    lines += [f"  skipped {skip.what}: {skip.why}" for skip in p.skipped]
    if not p.skipped:
        lines.append("  skipped: nothing")
    return "\n".join(lines)
