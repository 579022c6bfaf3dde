"""Dead letters processors write are counted into the frame stats (agent through test_context)."""

from __future__ import annotations

from types import SimpleNamespace

import faust

from agents.count_results import register_count_dead_letters
from core.counters import sum_snapshots
from core.ledger import Ledger
from frame_buffer_sdk.models import PROCESSOR_SOURCE, DeadLetter


async def test_processor_dead_letters_are_counted_by_reason_and_processor() -> None:
    app = faust.App("unit-letters", store="memory://", web_enabled=False)
    ledger = Ledger()
    orch = SimpleNamespace(app=app, topics=SimpleNamespace(dead_letter=app.topic("letters")), stats=ledger)
    agent = register_count_dead_letters(orch)  # type: ignore[arg-type]

    def letter(reason: str, source: str | None, pid: str | None = "det") -> bytes:
        return DeadLetter(reason=reason, detail="", processor_id=pid, source=source).model_dump_json().encode()

    async with agent.test_context() as test:
        await test.put(letter("processing_failed", PROCESSOR_SOURCE))
        await test.put(letter("pixels_missing", PROCESSOR_SOURCE))
        await test.put(letter("processing_failed", PROCESSOR_SOURCE, "face"))
        await test.put(letter("no_capable_processor", None, None))  # a worker's: counted where written
        await test.put(b"not json")

    totals = sum_snapshots([ledger.totals().snapshot()])
    assert totals["processor_dead_lettered"] == {"processing_failed": 2, "pixels_missing": 1}
    assert totals["dead_lettered_by_processor"] == {"det": 2, "face": 1}
    assert totals["dead_lettered"] == {}
