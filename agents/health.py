"""Processor health: a per-processor state machine fed heartbeats and committed offsets.

Pure code: time comes in as epoch or monotonic seconds (the same clock for every call).

- UNHEALTHY: no heartbeat for `heartbeat_misses` x `heartbeat_interval` seconds, counted up to
  the newest heartbeat of any processor or tick of the leader's that the path delivered (a slow
  heartbeat path singles no one out, a lone processor included).
- STALLED: heartbeats arrive, but the group's committed offsets have stood still for
  `stall_timeout` seconds while lag is above zero and has not shrunk (work is piling up).
- Back to HEALTHY after `recovery_heartbeats` fresh heartbeats, each seen with progress
  since the one before: committed offsets moved, or lag is 0 (an idle processor has
  nothing to commit and must still be able to recover).

Statuses this tracker does not decide (DRAINING, DEREGISTERED) are left as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from frame_buffer_sdk.models import ProcessorStatus

if TYPE_CHECKING:
    from agents.config import HealthConfig

_JUDGED = (ProcessorStatus.HEALTHY, ProcessorStatus.UNHEALTHY, ProcessorStatus.STALLED)


def heartbeat_path_silent(
    last_heartbeats: list[float], now: float, deadline: float, path_tick: float | None = None
) -> bool:
    """Nothing came through for half the silence deadline: the path the heartbeats share (a
    worker's REST API, the control topic, the registry fold) has stopped, not the processors.

    ``path_tick`` is the send time of the newest leader tick the path delivered (agents.path_tick).
    With it the path is also silent when neither a tick nor a heartbeat came through for half the
    deadline, which holds verdicts for a lone processor too. A tick that comes through does not
    clear the first rule: the processors may post to another worker than the leader, and that
    worker may be the one that stopped.

    Processors heartbeat at their own phases, up to one interval apart, so when the path stops
    they cross the deadline one after another; waiting until EVERY one is past it would fail
    the first ones over while their siblings still look alive. Half the deadline is crossed
    before any processor's deadline (at HEARTBEAT_MISSES >= 2) and after a healthy path's
    longest gap of one interval. Without ticks, one processor alone proves nothing either way.
    """
    every_processor = len(last_heartbeats) > 1 and now - max(last_heartbeats) > deadline / 2
    if path_tick is None:
        return every_processor
    return every_processor or now - max([*last_heartbeats, path_tick]) > deadline / 2


@dataclass(frozen=True, slots=True)
class StatusChange:
    processor_id: str
    old: ProcessorStatus
    new: ProcessorStatus
    reason: str


class _State:
    __slots__ = (
        "committed",
        "counted_heartbeat",
        "first_seen",
        "lag",
        "lag_at_still",
        "last_heartbeat",
        "progressed",
        "status",
        "still_since",
        "streak",
    )

    def __init__(self, status: ProcessorStatus, at: float) -> None:
        self.status = status
        self.first_seen = at
        self.last_heartbeat: float | None = None
        self.committed: int | None = None
        self.lag = 0
        self.still_since = at
        self.lag_at_still = 0
        # Recovery bookkeeping: the heartbeat last counted, the streak, progress since it.
        self.counted_heartbeat: float | None = None
        self.streak = 0
        self.progressed = False


class HealthTracker:
    __slots__ = (
        "_path_tick",
        "_states",
        "heartbeat_interval",
        "heartbeat_misses",
        "recovery_heartbeats",
        "stall_timeout",
    )

    def __init__(
        self,
        *,
        heartbeat_interval: float = 5.0,
        heartbeat_misses: int = 3,
        stall_timeout: float = 30.0,
        recovery_heartbeats: int = 2,
    ) -> None:
        if heartbeat_interval <= 0 or stall_timeout <= 0:
            raise ValueError("heartbeat_interval and stall_timeout must be positive")
        if heartbeat_misses < 1 or recovery_heartbeats < 1:
            raise ValueError("heartbeat_misses and recovery_heartbeats must be >= 1")
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_misses = heartbeat_misses
        self.stall_timeout = stall_timeout
        self.recovery_heartbeats = recovery_heartbeats
        self._states: dict[str, _State] = {}
        self._path_tick: float | None = None

    @classmethod
    def from_config(cls, config: HealthConfig) -> HealthTracker:
        return cls(
            heartbeat_interval=config.heartbeat_interval,
            heartbeat_misses=config.heartbeat_misses,
            stall_timeout=config.stall_timeout,
            recovery_heartbeats=config.recovery_heartbeats,
        )

    @property
    def deadline(self) -> float:
        """Seconds without a heartbeat after which a processor is unhealthy."""
        return self.heartbeat_interval * self.heartbeat_misses

    # --- inputs -----------------------------------------------------------------------------
    def track(self, processor_id: str, status: ProcessorStatus, at: float) -> None:
        """Start tracking with a known status (e.g. the registry's, after a leader change).

        No-op for an id already tracked. Without it, the first input starts a processor as HEALTHY.
        """
        if processor_id not in self._states:
            self._states[processor_id] = _State(status, at)

    def heartbeat(self, processor_id: str, at: float) -> None:
        """A heartbeat sent at `at`; an older one than already seen (reordering) is ignored."""
        st = self._state(processor_id, at)
        if st.last_heartbeat is None or at > st.last_heartbeat:
            st.last_heartbeat = at

    def offsets(self, processor_id: str, committed_total: int, lag: int, at: float) -> None:
        """A lag sample: the group's committed offsets summed over partitions, and its lag."""
        st = self._state(processor_id, at)
        lag = max(0, lag)
        if st.committed is None or committed_total != st.committed:
            if st.committed is not None:
                st.progressed = True
            st.committed = committed_total
            st.still_since = at
            st.lag_at_still = lag
        st.lag = lag

    def path_tick(self, at: float) -> None:
        """The newest leader tick the heartbeat path delivered was sent at ``at``; an older one
        than already seen (another leader's, reordered) is ignored."""
        if self._path_tick is None or at > self._path_tick:
            self._path_tick = at

    @property
    def path_ticked_at(self) -> float | None:
        return self._path_tick

    def forget(self, processor_id: str) -> None:
        self._states.pop(processor_id, None)

    # --- outputs ----------------------------------------------------------------------------
    def status(self, processor_id: str) -> ProcessorStatus:
        """The current verdict; an id never seen is presumed healthy (it just registered)."""
        st = self._states.get(processor_id)
        return ProcessorStatus.HEALTHY if st is None else st.status

    def tracked(self) -> list[str]:
        return list(self._states)

    def evaluate(self, now: float) -> list[StatusChange]:
        """Apply the rules at `now`; return the status changes, in processor id order."""
        changes: list[StatusChange] = []
        clock = self._path_clock(now)
        for pid in sorted(self._states):
            st = self._states[pid]
            if st.status not in _JUDGED:
                continue
            new, reason = self._judge(st, now, clock)
            if new is not st.status:
                changes.append(StatusChange(pid, st.status, new, reason))
                if new is not ProcessorStatus.HEALTHY:
                    # Heartbeats from before the failure must not count towards recovery.
                    st.counted_heartbeat = st.last_heartbeat
                    st.streak = 0
                    st.progressed = False
                st.status = new
        return changes

    def _path_clock(self, now: float) -> float:
        """Silence is measured up to the newest heartbeat or leader tick the path delivered, not
        up to now.

        A processor is silent when its peers' heartbeats, or the leader's ticks, kept arriving
        while its own did not. When the path itself is slow or stops (the worker taking
        heartbeats starved or frozen, the broker frozen), every heartbeat ages alike and none is
        singled out. The tick is the peer that is always there: a lone processor's silence is
        measured up to it, and only without ticks up to now. A dead processor is still found a
        deadline after its last heartbeat, plus the tick's age: about one sample on a healthy path.
        """
        heard = [st.last_heartbeat for st in self._states.values() if st.last_heartbeat is not None]
        if self._path_tick is not None:
            return min(now, max([*heard, self._path_tick]))
        if len(self._states) < 2 or not heard:
            return now
        return min(now, max(heard))

    def _judge(self, st: _State, now: float, clock: float) -> tuple[ProcessorStatus, str]:
        last = st.last_heartbeat if st.last_heartbeat is not None else st.first_seen
        silent = clock - last
        if silent > self.deadline:
            missed = int(silent // self.heartbeat_interval)
            return ProcessorStatus.UNHEALTHY, f"no heartbeat for {silent:.1f}s ({missed} intervals missed)"
        still = now - st.still_since
        if st.committed is not None and st.lag > 0 and st.lag >= st.lag_at_still and still >= self.stall_timeout:
            return (
                ProcessorStatus.STALLED,
                f"committed offsets still for {still:.1f}s while lag went {st.lag_at_still} -> {st.lag}",
            )
        if st.status is ProcessorStatus.HEALTHY:
            return ProcessorStatus.HEALTHY, ""
        return self._recover(st)

    def _recover(self, st: _State) -> tuple[ProcessorStatus, str]:
        fresh = st.last_heartbeat is not None and (
            st.counted_heartbeat is None or st.last_heartbeat > st.counted_heartbeat
        )
        if fresh:
            st.counted_heartbeat = st.last_heartbeat
            # No offsets known at all: nothing to judge progress by, the heartbeats decide alone.
            if st.progressed or st.lag == 0 or st.committed is None:
                st.streak += 1
            st.progressed = False
        if st.streak >= self.recovery_heartbeats:
            st.streak = 0
            return ProcessorStatus.HEALTHY, f"{self.recovery_heartbeats} fresh heartbeats with progress"
        return st.status, ""

    def _state(self, processor_id: str, at: float) -> _State:
        st = self._states.get(processor_id)
        if st is None:
            st = self._states[processor_id] = _State(ProcessorStatus.HEALTHY, at)
        return st
