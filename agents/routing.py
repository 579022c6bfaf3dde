"""Routing decisions: which processor gets a frame, per capability. Pure code, no I/O.

A frame fans out to one processor per capability it needs. Stateless capabilities use the
power of two choices on load; stateful ones (any processor offering the capability is
stateful) keep a camera on one processor by consistent hashing with bounded loads. A
CRITICAL processor gets nothing while a peer has room; when every peer is CRITICAL the
frame is held (HOLD) and the caller pauses or sheds, depending on its priority.

Load = (last sampled lag + frames this router sent there since that sample) / capacity.
The caller reports each send with `record_sent` and its time, so routing between two lag
samples does not herd onto the processor that looked emptiest at the last sample; a new
sample forgets only the sends it already counts (those before its time), since a sample
reaches the router a second or so after it was taken.

A sample older than `stale_sample_seconds` (the leader stalled, or its reports stopped) says
nothing any more about the room a processor has: this router's sends since then stop counting
against that room (no HOLD from them), and only its sends of the last `stale_sample_seconds`
still weigh in the choice between peers. Nor does its level say anything any more: a CRITICAL
level from a stale sample is unknown, not CRITICAL, so it never HOLDs frames (a HOLD lasts until
a fresh sample, which a stalled leader never sends); the processor competes on its load (the
last lag it reported plus this router's recent sends) like any peer, and fresh samples of its
peers still steer frames away from the full ones. `update_view` judges ages at the `now` it is given.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from hashlib import blake2b

from core.levels import Level

ANY_CAPABILITY = "*"
VIRTUAL_NODES = 64
# A sample reaches the router a view refresh or two after it was taken; five sample
# intervals without a newer one means the sampler (the leader) has stopped, not lagged.
STALE_AFTER_SAMPLE_INTERVALS = 5

# Decision reasons (stable strings: they appear in traces, dead letters and tests).
REASON_ONLY = "single_candidate"
REASON_P2C = "power_of_two"
REASON_ANY = "any_capability"
REASON_KEPT = "affinity_kept"
REASON_NEW = "affinity_new"
REASON_MOVED_UNHEALTHY = "affinity_moved:unhealthy"
REASON_MOVED_CRITICAL = "affinity_moved:critical"
REASON_MOVED_OVERLOADED = "affinity_moved:overloaded"
REASON_ALL_CRITICAL = "all_critical"
REASON_NO_CANDIDATE = "no_capable_processor"


class Action(StrEnum):
    SEND = "send"
    DEAD_LETTER = "dead_letter"
    HOLD = "hold"


@dataclass(frozen=True, slots=True)
class ProcessorView:
    """What routing knows of one processor.

    `sampled_at` identifies the lag sample `lag` comes from: the router's sent-since-sample
    counter restarts only when it changes. None means every view update is a new sample.
    """

    id: str
    capabilities: frozenset[str]
    capacity: int
    stateful: bool = False
    healthy: bool = True
    lag: int = 0
    level: Level = Level.NORMAL
    sampled_at: float | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """One capability's outcome for one frame.

    `new_affinity` is True when the caller must persist camera -> processor_id for this
    capability (a new or moved assignment). `protected` says a HOLD must pause rather than shed.
    """

    capability: str
    action: Action
    processor_id: str | None
    reason: str
    new_affinity: bool = False
    protected: bool = False


def stable_hash(text: str) -> int:
    """A 64-bit hash that is the same in every process (Python's hash() is salted per process)."""
    return int.from_bytes(blake2b(text.encode(), digest_size=8).digest(), "big")


class _Pool:
    """The candidates of one capability, rebuilt on every view update."""

    __slots__ = (
        "all_critical",
        "critical_ids",
        "first_caps",
        "load_sum",
        "members",
        "ring_hashes",
        "ring_ids",
        "stateful",
        "views",
    )

    def __init__(
        self, healthy: list[ProcessorView], stateful: bool, loads: Mapping[str, float], critical: frozenset[str]
    ) -> None:
        usable = [v for v in healthy if v.id not in critical]
        self.all_critical = not usable
        # When all are CRITICAL the pool still holds them so the caller can be told who is full.
        chosen = usable or healthy
        self.views: tuple[ProcessorView, ...] = tuple(sorted(chosen, key=lambda v: v.id))
        self.members: dict[str, ProcessorView] = {v.id: v for v in self.views}
        self.critical_ids = frozenset(v.id for v in healthy if v.id in critical) if usable else frozenset()
        self.first_caps: dict[str, str] = {v.id: min(v.capabilities) for v in self.views}
        self.stateful = stateful
        self.load_sum = sum(loads[v.id] for v in self.views)
        self.ring_hashes: list[int] = []
        self.ring_ids: list[str] = []


class Router:
    """Routing state of one worker: the latest processor view plus sends since each lag sample."""

    __slots__ = (
        "_any",
        "_pools",
        "_pools_of",
        "_rings",
        "_rng",
        "_sends",
        "_sent",
        "_stale",
        "_views",
        "_vnode_hashes",
        "affinity_epsilon",
        "critical_utilisation",
        "default_capabilities",
        "overload_floor",
        "protected_priority",
        "stale_sample_seconds",
    )

    def __init__(
        self,
        *,
        default_capabilities: Sequence[str] = (),
        affinity_epsilon: float = 0.25,
        protected_priority: int = 8,
        overload_floor: float = 0.5,
        critical_utilisation: float = 0.95,
        rng: random.Random | None = None,
        stale_sample_seconds: float | None = None,
    ) -> None:
        """`overload_floor`: a camera is never moved off (or steered away from) a processor whose
        load is at or below this, however uneven the loads; moving stateful cameras costs their
        state, which is not worth paying while the processor is far from full.
        `stale_sample_seconds`: age at which a lag sample is stale (None: never)."""
        if stale_sample_seconds is not None and stale_sample_seconds <= 0:
            raise ValueError(f"stale_sample_seconds must be positive, got {stale_sample_seconds}")
        self.stale_sample_seconds = stale_sample_seconds
        if affinity_epsilon < 0:
            raise ValueError(f"affinity_epsilon must be >= 0, got {affinity_epsilon}")
        self.default_capabilities: tuple[str, ...] = tuple(dict.fromkeys(default_capabilities))
        self.affinity_epsilon = affinity_epsilon
        self.protected_priority = protected_priority
        self.overload_floor = overload_floor
        # Levels arrive with lag samples, a second or so late; a burst in between must not
        # overfill a processor, so this router's own sends are held to the same line.
        self.critical_utilisation = critical_utilisation
        self._rng = rng or random.Random()
        self._views: dict[str, ProcessorView] = {}
        self._sent: dict[str, int] = {}
        self._sends: dict[str, deque[float]] = {}
        self._stale: set[str] = set()
        self._pools: dict[str, _Pool] = {}
        self._pools_of: dict[str, tuple[_Pool, ...]] = {}
        self._any: _Pool | None = None
        self._rings: dict[tuple[str, ...], tuple[list[int], list[str]]] = {}
        self._vnode_hashes: dict[str, tuple[int, ...]] = {}

    # --- view ---------------------------------------------------------------------------
    def update_view(self, processors: Iterable[ProcessorView], now: float | None = None) -> None:
        """Replace the view; forget the sends that each processor's new lag sample counts.

        `now` (the lag samples' clock) judges the samples' ages: a sample older than
        `stale_sample_seconds` then leaves its processor's level unknown (None: no sample is stale)."""
        old = self._views
        views: dict[str, ProcessorView] = {}
        for v in processors:
            if v.capacity <= 0:
                raise ValueError(f"processor {v.id!r} has capacity {v.capacity}; it must be positive")
            if not v.capabilities:
                raise ValueError(f"processor {v.id!r} has no capabilities")
            views[v.id] = v
        sent: dict[str, int] = {}
        sends: dict[str, deque[float]] = {}
        for pid, v in views.items():
            times = sends[pid] = self._sends.get(pid) or deque()
            prev = old.get(pid)
            if v.sampled_at is None:
                times.clear()
            elif prev is None or prev.sampled_at != v.sampled_at:
                while times and times[0] < v.sampled_at:
                    times.popleft()
                self._stale.discard(pid)  # the next send judges the new sample's age
            sent[pid] = len(times)
        self._stale &= views.keys()
        self._stale |= self.stale_samples(views.values(), now)
        self._views = views
        self._sent = sent
        self._sends = sends
        loads = {pid: (v.lag + sent[pid]) / v.capacity for pid, v in views.items()}

        by_cap: dict[str, list[ProcessorView]] = {}
        stateful_caps: set[str] = set()
        healthy_all: list[ProcessorView] = []
        for v in views.values():
            if v.stateful:
                stateful_caps.update(v.capabilities)
            if not v.healthy:
                continue
            healthy_all.append(v)
            for cap in v.capabilities:
                by_cap.setdefault(cap, []).append(v)
        # A level is only as fresh as its sample: a stale CRITICAL one holds nothing.
        critical = frozenset(pid for pid, v in views.items() if v.level is Level.CRITICAL and pid not in self._stale)
        self._pools = {cap: _Pool(vs, cap in stateful_caps, loads, critical) for cap, vs in by_cap.items()}
        self._build_rings()
        self._any = _Pool(healthy_all, False, loads, critical) if healthy_all else None
        pools_of: dict[str, list[_Pool]] = {}
        for pool in self._pools.values():
            if pool.stateful:
                for pid in pool.members:
                    pools_of.setdefault(pid, []).append(pool)
        self._pools_of = {pid: tuple(pools) for pid, pools in pools_of.items()}

    def stale_samples(self, views: Iterable[ProcessorView], now: float | None) -> set[str]:
        """Ids whose lag sample is older than `stale_sample_seconds` at `now`."""
        limit = self.stale_sample_seconds
        if limit is None or now is None:
            return set()
        return {v.id for v in views if v.sampled_at is not None and now - v.sampled_at > limit}

    def _build_rings(self) -> None:
        """Give stateful pools their hash ring, reusing rings whose membership did not change.

        Hashing 64 virtual nodes per processor per capability on every view refresh would
        cost milliseconds of event-loop time twice a second; membership rarely changes.
        """
        rings: dict[tuple[str, ...], tuple[list[int], list[str]]] = {}
        for pool in self._pools.values():
            if not pool.stateful:
                continue
            members = tuple(pool.members)
            ring = rings.get(members) or self._rings.get(members)
            if ring is None:
                pairs = sorted((h, pid) for pid in members for h in self._vnodes(pid))
                ring = ([h for h, _ in pairs], [pid for _, pid in pairs])
            rings[members] = ring
            pool.ring_hashes, pool.ring_ids = ring
        self._rings = rings
        self._vnode_hashes = {pid: hs for pid, hs in self._vnode_hashes.items() if pid in self._views}

    def _vnodes(self, processor_id: str) -> tuple[int, ...]:
        hashes = self._vnode_hashes.get(processor_id)
        if hashes is None:
            hashes = tuple(stable_hash(f"{processor_id}#{i}") for i in range(VIRTUAL_NODES))
            self._vnode_hashes[processor_id] = hashes
        return hashes

    def record_sent(self, processor_id: str, at: float) -> None:
        """Count one frame sent to `processor_id` at `at` (the lag samples' clock), once per SEND."""
        view = self._views.get(processor_id)
        if view is None:
            return
        times = self._sends[processor_id]
        times.append(at)
        added = 1
        limit = self.stale_sample_seconds
        if limit is not None and view.sampled_at is not None and at - view.sampled_at > limit:
            # Without new samples the sends would pile up forever against the frozen lag.
            self._stale.add(processor_id)
            while times and times[0] < at - limit:
                times.popleft()
                added -= 1
        self._sent[processor_id] += added
        step = added / view.capacity
        for pool in self._pools_of.get(processor_id, ()):
            pool.load_sum += step

    def load(self, processor_id: str) -> float:
        """(lag + frames sent since the last lag sample) / capacity. KeyError for an unknown id."""
        v = self._views[processor_id]
        return (v.lag + self._sent[processor_id]) / v.capacity

    def view(self, processor_id: str) -> ProcessorView | None:
        return self._views.get(processor_id)

    def candidates(self, capability: str) -> tuple[str, ...]:
        """Ids routing would choose from for `capability` now (empty: it would dead-letter)."""
        pool = self._pools.get(capability)
        return tuple(pool.members) if pool else ()

    def is_protected(self, priority: int) -> bool:
        """Frames at or above the protected priority are never shed: a HOLD means pause."""
        return priority >= self.protected_priority

    # --- decisions ----------------------------------------------------------------------
    def route(
        self, capabilities: Sequence[str], camera_id: str, priority: int, affinity: Mapping[str, str]
    ) -> list[Decision]:
        """One decision per capability the frame needs (defaults if it names none)."""
        protected = self.is_protected(priority)
        named: Sequence[str] = capabilities or self.default_capabilities
        if not named:
            return [self._route_any(protected)]
        # Order-preserving dedupe: one decision per capability even if a name repeats.
        caps: Iterable[str] = dict.fromkeys(named) if len(named) > 1 else named
        decisions: list[Decision] = []
        for cap in caps:
            pool = self._pools.get(cap)
            if pool is None:
                decisions.append(Decision(cap, Action.DEAD_LETTER, None, REASON_NO_CANDIDATE, protected=protected))
            elif pool.all_critical:
                decisions.append(Decision(cap, Action.HOLD, None, REASON_ALL_CRITICAL, protected=protected))
            elif pool.stateful:
                assigned = affinity.get(cap)
                decisions.append(
                    self._within_room(pool, self._route_affine(pool, cap, camera_id, assigned, protected), assigned)
                )
            else:
                pid, reason = self._two_choices(pool.views)
                decisions.append(self._within_room(pool, Decision(cap, Action.SEND, pid, reason, protected=protected)))
        return decisions

    def _within_room(self, pool: _Pool, decision: Decision, assigned: str | None = None) -> Decision:
        """The choice, unless sends since the last sample filled it: then the roomiest peer, or HOLD."""
        pid = decision.processor_id
        if pid is None or not self._filled_since_sample(pool.members[pid]):
            return decision
        roomy = [v for v in pool.views if not self._filled_since_sample(v)]
        if not roomy:
            return Decision(decision.capability, Action.HOLD, None, REASON_ALL_CRITICAL, protected=decision.protected)
        roomiest = min(roomy, key=self._load_of)
        return Decision(
            decision.capability,
            Action.SEND,
            roomiest.id,
            decision.reason,
            new_affinity=pool.stateful and roomiest.id != assigned,
            protected=decision.protected,
        )

    def _filled_since_sample(self, v: ProcessorView) -> bool:
        """The sample left room, this router's sends since then took it. (A sample that was
        already past the line is the level's business, with its hysteresis. A stale sample
        leaves no line to cross.)"""
        if v.id in self._stale:
            return False
        line = self.critical_utilisation * v.capacity
        return v.lag < line <= v.lag + self._sent[v.id]

    def _route_any(self, protected: bool) -> Decision:
        pool = self._any
        if pool is None:
            return Decision(ANY_CAPABILITY, Action.DEAD_LETTER, None, REASON_NO_CANDIDATE, protected=protected)
        if pool.all_critical:
            # Name a real capability so re-routing the held frame with it works.
            least_full = min(pool.views, key=self._load_of)
            return Decision(pool.first_caps[least_full.id], Action.HOLD, None, REASON_ALL_CRITICAL, protected=protected)
        pid, _ = self._two_choices(pool.views)
        return Decision(pool.first_caps[pid], Action.SEND, pid, REASON_ANY, protected=protected)

    def _load_of(self, v: ProcessorView) -> float:
        return (v.lag + self._sent[v.id]) / v.capacity

    def _two_choices(self, views: tuple[ProcessorView, ...]) -> tuple[str, str]:
        n = len(views)
        if n == 1:
            return views[0].id, REASON_ONLY
        rnd = self._rng.random
        i = int(rnd() * n)
        j = int(rnd() * (n - 1))
        if j >= i:
            j += 1
        a, b = views[i], views[j]
        sent = self._sent
        # Cross-multiplied to compare (lag+sent)/capacity without two divisions.
        if (a.lag + sent[a.id]) * b.capacity <= (b.lag + sent[b.id]) * a.capacity:
            return a.id, REASON_P2C
        return b.id, REASON_P2C

    def _route_affine(self, pool: _Pool, cap: str, camera_id: str, assigned: str | None, protected: bool) -> Decision:
        bound = max((1.0 + self.affinity_epsilon) * pool.load_sum / len(pool.views), self.overload_floor)
        if assigned is None:
            reason = REASON_NEW
        else:
            current = pool.members.get(assigned)
            if current is not None:
                if self._load_of(current) <= bound:
                    return Decision(cap, Action.SEND, assigned, REASON_KEPT, protected=protected)
                reason = REASON_MOVED_OVERLOADED
            elif assigned in pool.critical_ids:
                reason = REASON_MOVED_CRITICAL
            else:
                reason = REASON_MOVED_UNHEALTHY
        pid = self._walk_ring(pool, camera_id, assigned, bound)
        return Decision(cap, Action.SEND, pid, reason, new_affinity=pid != assigned, protected=protected)

    def _walk_ring(self, pool: _Pool, camera_id: str, exclude: str | None, bound: float) -> str:
        """First processor clockwise from the camera's hash whose load fits the bound."""
        hashes, ids = pool.ring_hashes, pool.ring_ids
        size = len(ids)
        start = bisect_right(hashes, stable_hash(camera_id))
        members = pool.members
        distinct = len(members)
        seen: set[str] = set()
        for k in range(size):
            pid = ids[(start + k) % size]
            if pid in seen:
                continue
            seen.add(pid)
            if pid != exclude and self._load_of(members[pid]) <= bound:
                return pid
            if len(seen) == distinct:
                break
        others = [v for v in pool.views if v.id != exclude] or list(pool.views)
        return min(others, key=self._load_of).id
