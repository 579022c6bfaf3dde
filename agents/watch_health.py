"""watch_health: the leader's once-a-second look at every processor and at the router itself.

It samples the commit lag of each processor's consumer group and of the routing agents,
turns it into backpressure levels and health verdicts (pure code in agents.backpressure
and agents.health), and publishes the results as events: load reports to the
processor_load table, status changes to the control topic, the router's own level to
Redis for the bridge. Failover of unhealthy processors' backlogs starts from here.

Its gauges (backpressure level, queue depth, health, router lag) are set by the leader only.
A worker that stops being leader removes them, so Prometheus never shows a former leader's
frozen values beside the new leader's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from agents.backpressure import LevelTracker, router_level
from agents.config import HealthWatchConfig
from agents.failover import Failover
from agents.health import HealthTracker, heartbeat_path_silent
from agents.path_tick import TABLE_KEY, TICK_KEY, tick_record, tick_time
from agents.routing import Router
from core.context import Orchestrator
from core.lag import LagSample, LagSampler
from core.levels import Level
from core.metrics import BACKPRESSURE_LEVEL, PROCESSOR_HEALTHY, QUEUE_DEPTH, ROUTER_LAG
from frame_buffer_sdk.keys import backpressure_key
from frame_buffer_sdk.models import ControlEvent, ProcessorRecord, ProcessorStatus

log = logging.getLogger(__name__)
ROUTER_WATCH = "__router__"
BACKPRESSURE_TTL_SECONDS = 10
LEADER_GAUGES = (BACKPRESSURE_LEVEL, QUEUE_DEPTH, PROCESSOR_HEALTHY, ROUTER_LAG)


def clear_leader_gauges() -> None:
    """Remove every series of the gauges only the leader sets."""
    for gauge in LEADER_GAUGES:
        gauge.clear()


class HealthWatch:
    """State kept by the leader between samples; rebuilt from scratch on a new leader."""

    def __init__(self, orch: Orchestrator, router: Router, config: HealthWatchConfig) -> None:
        self.orch = orch
        self.router = router
        self.config = config
        self.thresholds = config.thresholds
        self.levels = LevelTracker(self.thresholds)
        self.health = HealthTracker.from_config(config.health)
        # The path's clock starts here: until a tick of this leader's comes back, silence after
        # this moment is not proven, so a path already late when it takes the lead fails no one.
        self.health.path_tick(time.time())
        self.router_level = Level.NORMAL
        self.sampler = LagSampler(config.bootstrap_servers, security=config.kafka_security)
        self.failover = Failover(config.failover)
        self._seen_heartbeat: dict[str, str] = {}
        self._known: set[str] = set()
        self.quiet_until = 0.0
        self.hold_verdicts()

    def hold_verdicts(self) -> None:
        """No health verdicts for one heartbeat deadline after leadership or a rebalance.

        While partitions move, the control topic is not folded and every heartbeat in the
        registry looks stale; judging then would fail over healthy processors.
        """
        self.quiet_until = time.time() + self.health.deadline

    async def close(self) -> None:
        await self.failover.close()
        await self.sampler.close()

    async def tick(self) -> None:
        orch = self.orch
        # First, so the tick's stamp is not aged by the lag sampling below.
        await self._publish_path_tick()
        ticked = tick_time(orch.tables.heartbeat_path.get(TABLE_KEY))
        if ticked is not None:
            self.health.path_tick(ticked)
        records = {pid: ProcessorRecord.model_validate(raw) for pid, raw in list(orch.tables.registry.items()) if raw}
        self._forget_gone(records)
        watches = {pid: (rec.topic, rec.consumer_group) for pid, rec in records.items()}
        watches[ROUTER_WATCH] = (self.config.captured_topic, self.config.app_id)
        samples = await self.sampler.sample(watches)
        now = time.time()
        for pid, rec in records.items():
            if self.health.status(pid) is ProcessorStatus.DRAINING and rec.status is not ProcessorStatus.DRAINING:
                # The processor ended its draining itself (registry fold); judge it afresh from there.
                self.health.forget(pid)
            # A new leader starts from the registry's verdicts, not from "all healthy".
            self.health.track(pid, rec.status, now)
            stamp = rec.last_heartbeat.isoformat()
            if self._seen_heartbeat.get(pid) != stamp:
                self._seen_heartbeat[pid] = stamp
                self.health.heartbeat(pid, rec.last_heartbeat.timestamp())
            sample = samples.get(pid)
            if sample is not None:
                self.health.offsets(pid, sample.committed_total, sample.total, now)
        changes = self.health.evaluate(now) if self._may_judge(records, now) else []
        for change in changes:
            await self._publish_status(change.processor_id, change.new, change.reason)
        for pid, rec in records.items():
            await self._publish_load(rec, samples.get(pid), now)
        await self._publish_router_level(samples.get(ROUTER_WATCH))
        for pid, rec in records.items():
            status = self.health.status(pid)
            if status in (ProcessorStatus.UNHEALTHY, ProcessorStatus.STALLED):
                sample = samples.get(pid)
                if (
                    sample is not None
                    and sample.total > 0
                    and self.failover.has_work(rec, sample.end, sample.committed)
                    and self._peers_for_all(rec)
                ):
                    self.failover.start(rec, reason=status.value)

    def _may_judge(self, records: dict[str, ProcessorRecord], now: float) -> bool:
        """Verdicts wait while partitions move, and while no processor's heartbeat comes through.

        All heartbeats stopping together says more about the path they travel (REST,
        control topic, registry fold) than about the processors; failing them all over
        would dead-letter frames that can simply wait in their topics.
        """
        if now < self.quiet_until:
            return False
        beats = [r.last_heartbeat.timestamp() for r in records.values()]
        if records and heartbeat_path_silent(beats, now, self.health.deadline, self.health.path_ticked_at):
            ticked = self.health.path_ticked_at
            log.warning(
                "newest heartbeat of %d processors %.1fs old, the leader's tick %.1fs: holding health verdicts",
                len(records),
                now - max(beats),
                now - ticked if ticked is not None else float("inf"),
            )
            # Once heartbeats flow again the processors' next beats arrive one by one: give
            # every one of them a deadline to be folded before any is judged.
            self.quiet_until = now + self.health.deadline
            return False
        return True

    async def _publish_path_tick(self) -> None:
        """A tick through the heartbeats' path (control topic, registry fold): agents.path_tick."""
        try:
            await self.orch.topics.control.send(key=TICK_KEY, value=tick_record(time.time(), self.orch.boot_id))
        except Exception as exc:  # a failed tick only leaves the path's clock where it was
            log.warning("could not send the heartbeat path tick: %r", exc)

    def _peers_for_all(self, rec: ProcessorRecord) -> bool:
        """Move a backlog only where every capability has a healthy peer; else it waits in place."""
        return all(any(pid != rec.id for pid in self.router.candidates(cap)) for cap in rec.capabilities)

    def _forget_gone(self, records: dict[str, ProcessorRecord]) -> None:
        for gone in self._known - records.keys():
            self.health.forget(gone)
            self.levels.forget(gone)
            self._seen_heartbeat.pop(gone, None)
            for gauge in (BACKPRESSURE_LEVEL, QUEUE_DEPTH, PROCESSOR_HEALTHY):
                with contextlib.suppress(KeyError):
                    gauge.remove(gone)
        self._known = set(records)

    async def _publish_status(self, pid: str, status: ProcessorStatus, reason: str) -> None:
        log.warning("processor %s is now %s (%s)", pid, status.value, reason)
        event = ControlEvent(kind="status", processor_id=pid, status=status, reason=reason)
        await self.orch.topics.control.send(key=pid.encode(), value=event.model_dump_json().encode())

    async def _publish_load(self, rec: ProcessorRecord, sample: LagSample | None, now: float) -> None:
        lag = sample.total if sample else 0
        utilisation = lag / rec.capacity
        level = self.levels.update(rec.id, utilisation)
        status = self.health.status(rec.id)
        healthy = status is ProcessorStatus.HEALTHY
        QUEUE_DEPTH.labels(rec.id).set(lag)
        BACKPRESSURE_LEVEL.labels(rec.id).set(int(level))
        PROCESSOR_HEALTHY.labels(rec.id).set(1 if healthy else 0)
        report = {
            "processor_id": rec.id,
            "lag": lag,
            "capacity": rec.capacity,
            "utilisation": round(utilisation, 4),
            "level": level.name,
            "status": status.value,
            "partitions": {str(p): v for p, v in (sample.per_partition if sample else {}).items()},
            "committed_total": sample.committed_total if sample else 0,
            # The sample's own start: sends after it are not in this lag yet.
            "sampled_at": sample.at if sample else now,
        }
        await self.orch.topics.load_reports.send(key=rec.id.encode(), value=json.dumps(report).encode())

    async def _publish_router_level(self, sample: LagSample | None) -> None:
        s = self.config
        partitions = sample.per_partition if sample else {}
        for partition, lag in partitions.items():
            ROUTER_LAG.labels(str(partition)).set(lag)
        budget = s.router_lag_budget * s.captured_partitions
        self.router_level = router_level(partitions, budget, self.thresholds, self.router_level)
        payload = {
            "level": self.router_level.name,
            "router_lag": sum(partitions.values()),
            "partitions": {str(p): v for p, v in partitions.items()},
            "budget": budget,
            "at": datetime.now(UTC).isoformat(),
        }
        try:
            await self.orch.redis.set(backpressure_key(s.app_id), json.dumps(payload), ex=BACKPRESSURE_TTL_SECONDS)
        except Exception as exc:  # Redis down must not stop health checks; the key expires to NORMAL
            log.warning("could not publish router backpressure to Redis: %s", exc)


class LeaderWatch:
    """The HealthWatch while this worker leads: made on the first tick as leader, closed (and
    its gauges cleared) on the first tick or rebalance that finds another worker leading."""

    def __init__(
        self,
        orch: Orchestrator,
        router: Router,
        config: HealthWatchConfig,
        make: Callable[[Orchestrator, Router, HealthWatchConfig], HealthWatch] = HealthWatch,
    ) -> None:
        self.orch = orch
        self.router = router
        self.config = config
        self.make = make
        self.watch: HealthWatch | None = None

    def is_leader(self) -> bool:
        return bool(self.orch.app.is_leader())

    async def tick(self) -> None:
        if not self.is_leader():
            await self.step_down()
            return
        if self.watch is None:
            self.watch = self.make(self.orch, self.router, self.config)
            log.info("leader: sampling lag and judging health")
        try:
            await asyncio.wait_for(self.watch.tick(), timeout=max(5.0, self.config.lag_sample_interval * 5))
        except Exception as exc:
            log.warning("health watch tick failed: %r", exc)

    async def rebalanced(self) -> None:
        if not self.is_leader():
            await self.step_down()
        elif self.watch is not None:
            self.watch.hold_verdicts()

    async def step_down(self) -> None:
        """No longer leader (or shutting down): drop the state and the leader-only series."""
        watch, self.watch = self.watch, None
        if watch is None:
            return
        clear_leader_gauges()
        log.info("no longer leader: health watch stopped, its gauges removed")
        try:
            await watch.close()
        except Exception as exc:
            log.warning("could not close the health watch: %r", exc)


def register_watch_health(orch: Orchestrator, router: Router, config: HealthWatchConfig) -> LeaderWatch:
    app = orch.app
    leader = LeaderWatch(orch, router, config)

    # Not on_leader=True: a worker that lost leadership must see it, to clear its gauges.
    @app.timer(config.lag_sample_interval, name="watch_health")
    async def watch_health() -> None:
        await leader.tick()

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def hold_after_rebalance(_: Any, **kwargs: Any) -> None:
        await leader.rebalanced()

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def close_watch(_: Any, **kwargs: Any) -> None:
        await leader.step_down()

    return leader
