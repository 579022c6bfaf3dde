"""count_results and count_dead_letters: count what processors finished and what they gave up
on, for the stats and the dashboard.

Each record is counted once per partition and offset (core.ledger): one a previous owner's
snapshot already counts is skipped, and a record is acked only once a delivered snapshot
counts it, so the results and letters replayed after a rebalance are never counted twice.
"""

from __future__ import annotations

import json
from typing import Any, cast

from core.context import Orchestrator
from frame_buffer_sdk.models import PROCESSOR_SOURCE


def register_count_results(orch: Orchestrator) -> Any:
    ledger = orch.stats

    @orch.app.agent(orch.topics.results, name="count_results")
    async def count_results(stream: Any) -> None:
        async for event in cast(Any, stream).noack().events():
            message = event.message
            counts, token = ledger.begin(message.tp, message.offset)
            try:
                pid = json.loads(event.value).get("processor_id", "unknown")
            except ValueError:
                pid = "unparseable"
            counters = ledger.current()
            counters.processed += 1
            counters.processed_by_processor[str(pid)] += 1
            ledger.end(counts, message.offset, token)
            ledger.ack(counts, message.offset, event.ack)

    return count_results


def register_count_dead_letters(orch: Orchestrator) -> Any:
    """Processors write their dead letters straight to the topic; nothing else would count them."""
    ledger = orch.stats

    @orch.app.agent(orch.topics.dead_letter, name="count_dead_letters")
    async def count_dead_letters(stream: Any) -> None:
        async for event in cast(Any, stream).noack().events():
            message = event.message
            counts, token = ledger.begin(message.tp, message.offset)
            letter = _processor_letter(event.value)
            if letter is not None:
                counters = ledger.current()
                counters.processor_dead_lettered[str(letter.get("reason"))] += 1
                counters.dead_lettered_by_processor[str(letter.get("processor_id"))] += 1
            ledger.end(counts, message.offset, token)
            ledger.ack(counts, message.offset, event.ack)

    return count_dead_letters


def _processor_letter(value: bytes) -> dict[str, Any] | None:
    """A dead letter a processor wrote; the workers' own are counted as they write them, the bridge's are its own."""
    try:
        letter = json.loads(value)
    except ValueError:
        return None
    if not isinstance(letter, dict) or letter.get("source") != PROCESSOR_SOURCE:
        return None
    return letter
