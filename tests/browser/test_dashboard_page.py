"""The dashboard page logic in a real Chromium, against a real aiohttp server that serves the real page.

The JSON endpoints are fed by a small stateful fixture whose counters grow at known rates,
so the rates, bars, colours and error states the page shows can be checked exactly.
The same page against the real system is tests/browser/test_dashboard_live.py.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web

from app.dashboard import dashboard_html
from devtools.devstack import free_port

if TYPE_CHECKING:  # Playwright is imported only where a browser runs: without it, the tests skip
    from tests.browser.pages import Browser

pytestmark = pytest.mark.browser

RATES = {"captured": 50.0, "routed": 40.0, "processed": 30.0, "shed": 5.0}
BASE_TOTALS = {"captured": 1_234_000, "routed": 1_000_000, "processed": 900_000, "shed": 10}
LEVEL_COLOURS = {
    "NORMAL": "rgb(47, 158, 68)",
    "ELEVATED": "rgb(224, 168, 0)",
    "HIGH": "rgb(232, 89, 12)",
    "CRITICAL": "rgb(201, 42, 42)",
}


def _processor(level: str, lag: int, capacity: int, status: str, caps: list[str], parts: int) -> dict[str, Any]:
    return {
        "level": level,
        "utilisation": lag / capacity,
        "lag": lag,
        "capacity": capacity,
        "partitions": {str(p): lag // parts for p in range(parts)},
        "status": status,
        "capabilities": caps,
    }


@dataclass
class FakeOrchestrator:
    """Answers like a worker: totals grow at RATES per second of wall time."""

    fail: bool = True
    router_error: str | None = None
    started: float = field(default_factory=time.time)
    processors: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {
            "detector-a": _processor("NORMAL", 30, 100, "healthy", ["detect", "track"], 2),
            "pose-c": _processor("ELEVATED", 70, 100, "healthy", ["pose"], 4),
            "seg-d": _processor("HIGH", 85, 100, "draining", ["segment"], 4),
            "ocr-b": _processor("CRITICAL", 250, 100, "stalled", ["ocr"], 8),
        }
    )

    def stats(self) -> dict[str, Any]:
        now = time.time()
        elapsed = now - self.started
        body: dict[str, Any] = {m: BASE_TOTALS[m] + int(RATES[m] * elapsed) for m in RATES}
        body["dead_lettered"] = {"no_processor": 7, "malformed": 3}
        body["processors"] = {
            "detector-a": {"routed": 1200, "processed": 1100},
            "ocr-b": {"routed": 50, "processed": 0},
        }
        body["at"] = datetime.fromtimestamp(now, UTC).isoformat()
        return body

    def backpressure(self) -> dict[str, Any]:
        router: dict[str, Any] = {"level": "ELEVATED", "lag": 4321, "partitions": {"0": 4000, "1": 321}}
        if self.router_error:
            router["error"] = self.router_error
        return {
            "router": router,
            "processors": self.processors,
            "shed": {"by_camera": {"cam-1": 10}, "by_reason": {"saturation": 10}},
            "bridges": [
                {"consumer": "bridge-1", "state": "paused", "backlog": 9000, "pending": 12, "mirrored_total": 5,
                 "dead_lettered_total": 0, "rate": 0.0, "at": datetime.now(UTC).isoformat()},
                {"consumer": "bridge-0", "state": "running", "backlog": 3, "pending": 1, "mirrored_total": 77,
                 "dead_lettered_total": 1, "rate": 49.5, "at": datetime.now(UTC).isoformat()},
            ],
        }  # fmt: skip


@pytest.fixture
def fake() -> FakeOrchestrator:
    return FakeOrchestrator()


@pytest.fixture
async def server(fake: FakeOrchestrator) -> AsyncIterator[str]:
    async def index(_: web.Request) -> web.Response:
        return web.Response(text=dashboard_html(), content_type="text/html")

    def endpoint(produce: Any) -> Any:
        async def handler(_: web.Request) -> web.Response:
            if fake.fail:
                return web.json_response({"error": "worker starting"}, status=503)
            return web.json_response(produce())

        return handler

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/api/v1/frames/stats", endpoint(fake.stats))
    app.router.add_get("/api/v1/backpressure", endpoint(fake.backpressure))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def _js_rows() -> str:
    return """Array.from(document.querySelectorAll('#processors tr[data-processor-id]')).map(tr => ({
        id: tr.dataset.processorId, level: tr.dataset.level, status: tr.dataset.status,
        fill: Number(tr.querySelector('.bar').dataset.fill),
        width: tr.querySelector('.bar .fill').style.width,
        fillColour: getComputedStyle(tr.querySelector('.bar .fill')).backgroundColor,
        badgeColour: getComputedStyle(tr.querySelector('.level')).backgroundColor,
        caps: Array.from(tr.querySelectorAll('.caps span')).map(s => s.textContent),
        lagText: tr.querySelector('.lagtext').textContent,
        partitions: Number(tr.querySelector('.partitions').textContent),
        routed: tr.querySelector('.routed').textContent,
    }))"""


def _num(element_id: str) -> str:
    return f"Number(document.getElementById('{element_id}').dataset.value)"


async def test_dashboard_renders_live_values(
    browser: Browser, server: str, fake: FakeOrchestrator, artifacts: Path
) -> None:
    page = await browser.new_page()
    await page.goto(f"{server}/?poll=250")

    # The API fails first: the page says so and has nothing to show yet.
    status = await page.wait_for(
        "document.getElementById('status').dataset.state === 'error' && document.getElementById('status').textContent"
    )
    assert "HTTP 503" in status and "no data yet" in status
    assert "waiting for data" in await page.evaluate("document.getElementById('processors').textContent")

    fake.fail = False
    await page.wait_for("document.getElementById('status').dataset.state === 'ok'")
    rows = {row["id"]: row for row in await page.wait_for(f"(r => r.length === 4 && r)({_js_rows()})")}

    assert [*rows] == sorted(rows), "processors are listed by id"
    a, c, d, b = rows["detector-a"], rows["pose-c"], rows["seg-d"], rows["ocr-b"]
    assert (a["fill"], a["width"], a["lagText"], a["caps"], a["partitions"]) == (
        0.3,
        "30%",
        "30 / 100",
        ["detect", "track"],
        2,
    )
    assert (b["fill"], b["width"], b["status"], b["partitions"]) == (1.0, "100%", "stalled", 8), "bar is capped at 1"
    assert (c["fill"], d["fill"], d["status"]) == (0.7, 0.85, "draining")
    assert a["routed"] == "1,200" and c["routed"] == "0"
    for row in rows.values():
        assert row["badgeColour"] == LEVEL_COLOURS[row["level"]] == row["fillColour"], row
    assert {r["level"] for r in rows.values()} == set(LEVEL_COLOURS)

    router = await page.evaluate(
        "[document.getElementById('router-level').dataset.level, document.getElementById('router-lag').textContent]"
    )
    assert router == ["ELEVATED", "4,321"]
    dead = await page.evaluate(
        "Array.from(document.querySelectorAll('#dead-letters li'))"
        ".map(li => [li.dataset.reason, li.lastChild.textContent])"
    )
    assert dead == [["no_processor", "7"], ["malformed", "3"]]
    bridges = await page.evaluate(
        "Array.from(document.querySelectorAll('#bridges tr[data-bridge]')).map(tr => "
        "[tr.dataset.bridge, tr.dataset.state, tr.querySelector('.backlog').textContent])"
    )
    assert bridges == [["bridge-0", "running", "3"], ["bridge-1", "paused", "9,000"]]

    # Rates come from consecutive totals; after a few seconds of samples they match the fixture's.
    await page.wait_for("Number(document.getElementById('chart-captured').dataset.points) >= 14", within=20)
    for metric, rate in RATES.items():
        shown = await page.evaluate(_num(f"rate-{metric}"))
        assert abs(shown - rate) <= max(1.0, rate * 0.08), (metric, shown)
        total = await page.evaluate(_num(f"total-{metric}"))
        assert BASE_TOTALS[metric] < total <= fake.stats()[metric]
    assert (await page.evaluate("document.getElementById('total-captured').textContent")).startswith("1,23")
    line = await page.evaluate("document.querySelector('#chart-routed polyline').getAttribute('points')")
    assert len(line.split()) >= 14

    # A change in the system shows up at the next poll.
    fake.processors["detector-a"] = _processor("HIGH", 95, 100, "healthy", ["detect", "track"], 2)
    moved = await page.wait_for(
        "(tr => tr.dataset.level === 'HIGH' && tr.querySelector('.bar').dataset.fill)"
        "(document.querySelector('tr[data-processor-id=\"detector-a\"]'))"
    )
    assert float(moved) == 0.95
    assert await page.evaluate("document.getElementById('router-error').textContent") == ""
    fake.router_error = "redis unavailable: connection refused"
    await page.wait_for("document.getElementById('router-error').textContent.includes('redis unavailable')")

    shot = await page.screenshot(artifacts / "dashboard-fixture.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000

    # The API fails again: the last values stay, marked stale, and the error is named.
    fake.fail = True
    status = await page.wait_for(
        "document.getElementById('status').dataset.state === 'error' && document.getElementById('status').textContent"
    )
    assert "HTTP 503" in status and "showing data from" in status
    assert await page.evaluate("document.body.dataset.stale") == "true"
    assert await page.evaluate("document.querySelectorAll('#processors tr[data-processor-id]').length") == 4
    assert page.exceptions == []
