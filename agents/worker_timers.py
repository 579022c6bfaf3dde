"""Per-worker timers: refresh the router's view, publish this worker's count snapshots.

Neither writes a table (tables change only inside agent streams): the view is read from
the GlobalTables, the counters go out as events that fold_stats folds.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from agents.routing import ProcessorView, Router
from core.context import Orchestrator
from core.levels import Level
from frame_buffer_sdk.models import ProcessorRecord, ProcessorStatus

log = logging.getLogger(__name__)
VIEW_REFRESH_SECONDS = 0.5
STATS_SECONDS = 1.0


def build_views(registry: dict[str, Any], load: dict[str, Any]) -> list[ProcessorView]:
    """What the router may choose from: registered processors with their latest load.

    Health is the leader's verdict in the registry alone. Judging heartbeat age here too
    would exclude every processor whenever a rebalance pauses the registry's folding.
    """
    views = []
    for pid, raw in registry.items():
        if not raw:
            continue
        rec = ProcessorRecord.model_validate(raw)
        report = load.get(pid) or {}
        views.append(
            ProcessorView(
                id=pid,
                capabilities=frozenset(rec.capabilities),
                capacity=rec.capacity,
                stateful=rec.stateful,
                healthy=_status(rec, report) is ProcessorStatus.HEALTHY,
                lag=int(report.get("lag", 0)),
                level=Level[report.get("level", "NORMAL")],
                sampled_at=report.get("sampled_at"),
            )
        )
    return views


def _status(rec: ProcessorRecord, report: dict[str, Any]) -> ProcessorStatus:
    """The leader's latest verdict: its load report, republished every sample, heals a
    registry copy that missed a status change; the registry answers until a report exists.
    Draining is the processor's own word and always wins."""
    if rec.status is ProcessorStatus.DRAINING or not report.get("status"):
        return rec.status
    return ProcessorStatus(report["status"])


def refresh_view(orch: Orchestrator, router: Router) -> None:
    """The router's view rebuilt from this worker's copy of the registry and load tables."""
    router.update_view(build_views(dict(orch.tables.registry.items()), dict(orch.tables.load.items())), time.time())


def register_worker_timers(orch: Orchestrator, router: Router) -> None:
    app = orch.app

    @app.timer(VIEW_REFRESH_SECONDS, name="refresh_routes")
    async def refresh_routes() -> None:
        refresh_view(orch, router)

    published = 0

    @app.timer(STATS_SECONDS, name="publish_stats")
    async def publish_stats() -> None:
        nonlocal published
        published += 1
        await orch.topics.worker_stats.send(
            key=orch.boot_id.encode(), value=json.dumps(stats_entry(orch, published)).encode()
        )


def stats_entry(orch: Orchestrator, seq: int) -> dict[str, Any]:
    """What this boot tells every worker: the last snapshot of each partition it counts (core.ledger).
    ``seq`` orders one boot's entries, so a replay of the stats topic never folds an older one last."""
    ledger = orch.stats
    return {
        "boot_id": orch.boot_id,
        "at": time.time(),
        "seq": seq,
        "sources": ledger.snapshots(),
        "unowned": ledger.unowned.snapshot(),
    }
