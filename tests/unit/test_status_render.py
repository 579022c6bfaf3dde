"""`status`'s table: every part of the report shows, and the backlog prefers live bridges over Redis."""

from __future__ import annotations

from typing import Any

from app.status import _backlog, render


def _report(**extra: Any) -> dict[str, Any]:
    report: dict[str, Any] = {
        "url": "http://w1:6066",
        "health": {"ready": False, "redis": True, "kafka": False, "partitions_assigned": 2},
        "workers": [
            {"url": "http://w1:6066", "partitions": [0, 1], "ready": False, "boot_id": "b1"},
            {"url": "http://w2:6066", "partitions": [2, 3], "ready": None, "error": "timed out"},
        ],
        "router": {
            "level": "HIGH",
            "lag": 1234,
            "partitions": [{"partition": p, "lag": 1234 if p == 2 else 0, "worker": "http://w2:6066"} for p in (2, 3)],
        },
        "processors": [
            {
                "id": "det-a",
                "status": "stalled",
                "status_reason": "offsets standing",
                "level": "CRITICAL",
                "lag": 250,
                "capacity": 100,
                "replicas": 2,
                "capabilities": ["detect", "track"],
                "topic": "frames.ready.det-a",
                "partitions": [{"partition": 0, "lag": 200}, {"partition": 1, "lag": 50}],
                "routed": 1200,
                "processed": 1100,
                "dead_lettered": 3,
            }
        ],
        "bridges": [{"consumer": "bridge-0", "state": "paused", "backlog": 9000, "pending": 12, "rate": 0.0}],
        "bridge_backlog": {"source": "bridge", "backlog": 9000, "pending": 12},
        "totals": {"captured": 5000, "routed": 4000, "dead_lettered": 7},
        "dead_lettered": {"no_capable_processor": 7},
    }
    report.update(extra)
    return report


def test_the_table_shows_every_part_of_the_report() -> None:
    text = render(_report(), width=200)
    for shown in (
        "NOT READY",
        "failing: kafka",
        "http://w2:6066",
        "error: timed out",
        "level HIGH  lag 1,234 (captured topic)",
        "det-a",
        "stalled (offsets standing)",
        "CRITICAL",
        "250 / 100",
        "detect,track",
        "1,200",
        "Processor lag per partition",
        "frames.ready.det-a",
        "9,000 unread, 12 pending (from bridge)",
        "bridge-0",
        "paused",
        "no_capable_processor 7",
        "captured 5,000",
    ):
        assert shown in text, (shown, text)


async def test_backlog_comes_from_the_freshest_bridge_without_asking_redis() -> None:
    bridges = [
        {"consumer": "b-old", "backlog": 5, "pending": 1, "at": "2025-01-01T00:00:00+00:00"},
        {"consumer": "b-new", "backlog": 7, "pending": 2, "at": "2025-01-01T00:00:05+00:00"},
    ]
    assert await _backlog(bridges, None) == {"source": "bridge", "backlog": 7, "pending": 2}
    missing = await _backlog([], None)
    assert missing["backlog"] is None and "no live bridge" in missing["error"]
