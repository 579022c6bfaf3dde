"""count_results: counts what processors finished, for the stats and the dashboard."""

from __future__ import annotations

import json
from typing import Any

from app.context import Orchestrator


def register_count_results(orch: Orchestrator) -> None:
    counters = orch.counters

    @orch.app.agent(orch.topics.results, name="count_results")
    async def count_results(stream: Any) -> None:
        async for value in stream:
            try:
                pid = json.loads(value).get("processor_id", "unknown")
            except ValueError:
                pid = "unparseable"
            counters.processed += 1
            counters.processed_by_processor[str(pid)] += 1
