"""The agents that fold event topics into GlobalTables (the only writers of those tables).

* fold_registry: processors.control -> processors (and the leader's ticks -> heartbeat_path)
* fold_load:     <app>-load-reports  -> processor_load
* fold_stats:    <app>-worker-stats  -> worker_stats
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pydantic import ValidationError

from agents.config import RegistryConfig
from agents.path_tick import TABLE_KEY, TICK_KEY, fold_tick
from agents.registry_fold import UnknownProcessor, fold_control
from core.context import Orchestrator
from core.deadletter import dead_letter_event
from frame_buffer_sdk.models import ControlEvent

log = logging.getLogger(__name__)


def register_folds(orch: Orchestrator, registry: RegistryConfig) -> None:
    app, topics, tables = orch.app, orch.topics, orch.tables

    @app.agent(topics.control, name="fold_registry")
    async def fold_registry(stream: Any) -> None:
        async for event in stream.events():
            key = event.key.decode("utf-8", "replace") if isinstance(event.key, bytes) else str(event.key)
            if event.key == TICK_KEY:
                # Folded in order with the heartbeats before it: the leader's measure of this path.
                try:
                    tables.heartbeat_path[TABLE_KEY] = fold_tick(event.value)
                except ValueError as exc:
                    await dead_letter_event(orch, "invalid_control_event", str(exc)[:500], key, event.value)
                continue
            try:
                control = ControlEvent.model_validate_json(event.value)
                updated = fold_control(tables.registry.get(control.processor_id), control, registry)
            except (ValidationError, ValueError, UnknownProcessor) as exc:
                reason = "unknown_processor" if isinstance(exc, UnknownProcessor) else "invalid_control_event"
                await dead_letter_event(orch, reason, str(exc)[:500], key, event.value)
                continue
            if updated is None:
                tables.registry.pop(control.processor_id, None)
                log.info("processor %s deregistered", control.processor_id)
            else:
                if control.kind in ("register", "status"):
                    log.info("processor %s: %s %s", control.processor_id, control.kind, updated["status"])
                tables.registry[control.processor_id] = updated

    @app.agent(topics.load_reports, name="fold_load")
    async def fold_load(stream: Any) -> None:
        async for event in stream.events():
            report = json.loads(event.value)
            tables.load[report["processor_id"]] = report

    @app.agent(topics.worker_stats, name="fold_stats")
    async def fold_stats(stream: Any) -> None:
        async for event in stream.events():
            entry = json.loads(event.value)
            if newer_entry(tables.worker_stats.get(entry["boot_id"]), entry):
                tables.worker_stats[entry["boot_id"]] = entry


def newer_entry(stored: dict[str, Any] | None, entry: dict[str, Any]) -> bool:
    """Whether a boot's stats entry replaces the one stored: a new owner of the stats topic replays
    it from its last commit, and must not leave an older entry last (a dead boot's for good)."""
    if not stored or "seq" not in entry:
        return True
    return int(entry["seq"]) > int(stored.get("seq", -1))
