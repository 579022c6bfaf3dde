"""count_results and count_dead_letters: count what processors finished and what they gave up
on, for the stats and the dashboard."""

from __future__ import annotations

import json
from typing import Any

from core.context import Orchestrator
from frame_buffer_sdk.models import PROCESSOR_SOURCE


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


def register_count_dead_letters(orch: Orchestrator) -> Any:
    """Processors write their dead letters straight to the topic; nothing else would count them."""
    counters = orch.counters

    @orch.app.agent(orch.topics.dead_letter, name="count_dead_letters")
    async def count_dead_letters(stream: Any) -> None:
        async for value in stream:
            try:
                letter = json.loads(value)
            except ValueError:
                continue
            if not isinstance(letter, dict) or letter.get("source") != PROCESSOR_SOURCE:
                continue  # the workers' own are counted as they write them; the bridge's are its own
            counters.processor_dead_lettered[str(letter.get("reason"))] += 1
            counters.dead_lettered_by_processor[str(letter.get("processor_id"))] += 1

    return count_dead_letters
