"""The dev runner's progress: rates from totals, the plain line, the rich view."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from devtools.progress import ChildStatus, Poll, ProgressView, Rates, plain_line, render, totals_line

STATS = {
    "captured": 120,
    "routed": 230,
    "processed": 200,
    "shed": 3,
    "dead_lettered": {"invalid_json": 2, "no_processor": 1},
    "processors": {},
}
BACKPRESSURE = {
    "router": {"level": "NORMAL", "lag": 4, "partitions": {"0": 4}},
    "processors": {
        "dev-brightness": {"level": "ELEVATED", "utilisation": 0.7, "lag": 70, "capacity": 100, "status": "healthy"},
        "dev-detector": {"level": "NORMAL", "utilisation": 0.0, "lag": 0, "capacity": 50, "status": "stalled"},
    },
    "bridges": [{"consumer": "host-1", "state": "running", "backlog": 5, "rate": 40.0}],
}


def test_rates_over_the_window_and_never_negative() -> None:
    rates = Rates(window=5.0)
    assert rates.rate("captured") == 0.0
    rates.add(0.0, {"captured": 0, "routed": 0, "processed": 0})
    rates.add(2.0, {"captured": 80, "routed": 100, "processed": 40})
    assert rates.rate("captured") == 40.0
    assert rates.rate("processed") == 20.0
    # A restarted worker may report smaller totals for a moment.
    rates.add(10.0, {"captured": 10, "routed": 10, "processed": 10})
    assert rates.rate("captured") == 0.0


def test_rates_forget_samples_older_than_the_window() -> None:
    rates = Rates(window=5.0)
    for second in range(20):
        rates.add(float(second), {"captured": 10 * second, "routed": 0, "processed": 0})
    rates.add(20.0, {"captured": 400, "routed": 0, "processed": 0})  # a burst of 210 in the last second
    assert rates.rate("captured") > 10 * 2


def test_plain_line_names_every_number() -> None:
    rates = Rates()
    rates.add(0.0, {"captured": 0, "routed": 0, "processed": 0})
    rates.add(1.0, STATS)
    line = plain_line(12.3, Poll(STATS, BACKPRESSURE), rates)
    assert line.startswith("t=12s ")
    for fragment in (
        "captured=120 (120.0/s)",
        "routed=230 (230.0/s)",
        "processed=200 (200.0/s)",
        "shed=3",
        "dead_lettered=3",
        "router=NORMAL lag=4",
        "dev-brightness: healthy ELEVATED lag=70",
        "dev-detector: stalled NORMAL lag=0",
        "bridge running backlog=5",
    ):
        assert fragment in line


def test_plain_line_while_no_worker_answers() -> None:
    line = plain_line(1.0, Poll(error="connection refused"), Rates())
    assert "waiting for stats (connection refused)" in line


def test_totals_line() -> None:
    assert totals_line(STATS) == "totals captured=120 routed=230 processed=200 shed=3 dead_lettered=3"
    assert "unavailable" in totals_line(None)


def test_rich_view_shows_numbers_processes_and_urls(tmp_path: Path) -> None:
    children = [
        ChildStatus("worker-0", 101, "running", tmp_path / "w.log"),
        ChildStatus("capture", 102, "exited 1", tmp_path / "c.log"),
    ]
    urls = [("dashboard", "http://127.0.0.1:6066/"), ("metrics", "http://127.0.0.1:6066/metrics")]
    console = Console(file=io.StringIO(), width=160, color_system=None)
    console.print(render(5.0, Poll(STATS, BACKPRESSURE), Rates(), children, urls, tmp_path))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    for fragment in (
        "230",
        "dead-lettered",
        "invalid_json=2",
        "ELEVATED",
        "stalled",
        "worker-0",
        "exited 1",
        "http://127.0.0.1:6066/metrics",
        str(tmp_path),
        "bridge host-1",
    ):
        assert fragment in text


def test_view_without_a_terminal_prints_one_line_per_update_and_totals_at_close(tmp_path: Path) -> None:
    out = io.StringIO()
    view = ProgressView([], tmp_path, out, live=False)
    view.update(0.0, 0.0, Poll(error="starting"), [])
    view.update(1.0, 1.0, Poll(STATS, BACKPRESSURE), [])
    view.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[-1] == totals_line(STATS)
