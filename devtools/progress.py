"""Live progress of `frame-orchestrator dev`: a rich table on a terminal, a plain line otherwise.

The numbers come from one worker's ``GET /api/v1/frames/stats`` and ``GET /api/v1/backpressure``
(system-wide totals: every worker publishes its counters to a shared table), turned into
rates here. Rendering is separate from polling so both views show the same numbers.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

COUNTED = ("captured", "routed", "processed")
_LEVEL_STYLE = {"NORMAL": "green", "ELEVATED": "yellow", "HIGH": "dark_orange", "CRITICAL": "bold red"}
_STATUS_STYLE = {"healthy": "green", "draining": "yellow", "unhealthy": "red", "stalled": "red"}


@dataclass(frozen=True)
class ChildStatus:
    """One process the dev runner started, as the view shows it."""

    name: str
    pid: int | None
    state: str  # "running", "stopping", "exited 0", ...
    log: Path


@dataclass(frozen=True)
class Poll:
    """One round of the two stats endpoints; either may be missing while a worker starts."""

    stats: Mapping[str, Any] | None = None
    backpressure: Mapping[str, Any] | None = None
    error: str | None = None


@dataclass
class Rates:
    """Frames per second of monotonic totals, over a sliding window so one slow poll does not spike it."""

    window: float = 5.0
    _samples: deque[tuple[float, dict[str, int]]] = field(default_factory=deque)

    def add(self, now: float, totals: Mapping[str, int]) -> None:
        self._samples.append((now, {k: int(totals.get(k, 0)) for k in COUNTED}))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
            self._samples.popleft()

    def rate(self, name: str) -> float:
        if len(self._samples) < 2:
            return 0.0
        (t0, first), (t1, last) = self._samples[0], self._samples[-1]
        if t1 <= t0:
            return 0.0
        # A restarted worker's totals may step down; never show a negative rate.
        return max(0.0, (last[name] - first[name]) / (t1 - t0))


def dead_lettered_total(stats: Mapping[str, Any]) -> int:
    return sum(int(v) for v in (stats.get("dead_lettered") or {}).values())


def plain_line(elapsed: float, poll: Poll, rates: Rates) -> str:
    """One line per second for logs and tests: every number of the live view, key=value."""
    parts = [f"t={elapsed:.0f}s"]
    stats = poll.stats
    if stats is None:
        parts.append(f"waiting for stats ({poll.error or 'no answer yet'})")
        return " ".join(parts)
    for name in COUNTED:
        parts.append(f"{name}={int(stats.get(name, 0))} ({rates.rate(name):.1f}/s)")
    parts.append(f"shed={int(stats.get('shed', 0))}")
    parts.append(f"dead_lettered={dead_lettered_total(stats)}")
    bp = poll.backpressure or {}
    router = bp.get("router") or {}
    parts.append(f"router={router.get('level', '?')} lag={router.get('lag', 0)}")
    for pid, proc in sorted((bp.get("processors") or {}).items()):
        parts.append(f"| {pid}: {proc.get('status', '?')} {proc.get('level', '?')} lag={proc.get('lag', 0)}")
    for bridge in bp.get("bridges") or []:
        parts.append(f"| bridge {bridge.get('state', '?')} backlog={bridge.get('backlog', 0)}")
    return " ".join(parts)


def totals_line(stats: Mapping[str, Any] | None) -> str:
    """The last line of a run: totals a script (or a test) can parse."""
    if stats is None:
        return "totals unavailable: no stats were received"
    counted = " ".join(f"{name}={int(stats.get(name, 0))}" for name in COUNTED)
    return f"totals {counted} shed={int(stats.get('shed', 0))} dead_lettered={dead_lettered_total(stats)}"


def render(
    elapsed: float,
    poll: Poll,
    rates: Rates,
    children: Sequence[ChildStatus],
    urls: Sequence[tuple[str, str]],
    log_dir: Path,
) -> RenderableType:
    frames = Table(title=f"Frame Buffer v2 dev - {elapsed:.0f} s", title_justify="left", expand=False)
    frames.add_column("frames")
    frames.add_column("per second", justify="right")
    frames.add_column("total", justify="right")
    stats = poll.stats or {}
    for name in COUNTED:
        frames.add_row(name, f"{rates.rate(name):.1f}", str(int(stats.get(name, 0))))
    frames.add_row("shed", "", str(int(stats.get("shed", 0))))
    dead = stats.get("dead_lettered") or {}
    reasons = ", ".join(f"{r}={n}" for r, n in sorted(dead.items(), key=lambda kv: -int(kv[1]))[:4])
    frames.add_row("dead-lettered", reasons, str(dead_lettered_total(stats)))

    bp = poll.backpressure or {}
    lag = Table(title="lag and health", title_justify="left")
    for column in ("consumer", "level", "health", "lag", "capacity"):
        lag.add_column(column, justify="right" if column in {"lag", "capacity"} else "left")
    router = bp.get("router") or {}
    lag.add_row("router", _level(router.get("level")), "", str(router.get("lag", 0)), "")
    for pid, proc in sorted((bp.get("processors") or {}).items()):
        status = str(proc.get("status", "?"))
        lag.add_row(
            pid,
            _level(proc.get("level")),
            Text(status, style=_STATUS_STYLE.get(status, "")),
            str(proc.get("lag", 0)),
            str(proc.get("capacity", "")),
        )
    for bridge in bp.get("bridges") or []:
        lag.add_row(
            f"bridge {bridge.get('consumer', '')}",
            str(bridge.get("state", "?")),
            f"{float(bridge.get('rate', 0.0)):.1f}/s",
            str(bridge.get("backlog", 0)),
            "",
        )

    procs = Table(title="processes", title_justify="left")
    procs.add_column("name")
    procs.add_column("pid", justify="right")
    procs.add_column("state")
    for child in children:
        style = "green" if child.state == "running" else "yellow" if child.state == "stopping" else "red"
        procs.add_row(child.name, str(child.pid or ""), Text(child.state, style=style))

    footer = Text()
    for label, url in urls:
        footer.append(f"{label:<12}", style="bold")
        footer.append(f"{url}\n")
    footer.append(f"{'logs':<12}", style="bold")
    footer.append(f"{log_dir}\n")
    if poll.error:
        footer.append(f"stats: {poll.error}\n", style="yellow")
    footer.append("Ctrl-C stops everything", style="dim")
    return Group(frames, lag, procs, footer)


def _level(level: Any) -> Text:
    name = str(level or "NORMAL")
    return Text(name, style=_LEVEL_STYLE.get(name, ""))


class ProgressView:
    """A rich Live table when the output is a terminal, else one plain line per update."""

    def __init__(self, urls: Sequence[tuple[str, str]], log_dir: Path, out: TextIO, live: bool) -> None:
        self.urls = list(urls)
        self.log_dir = log_dir
        self.out = out
        self.rates = Rates()
        self.last_stats: Mapping[str, Any] | None = None
        self._console = Console(file=out) if live else None
        self._live: Live | None = None
        # The terminal closed under us (SIGHUP, EIO): stop writing, so the stop that follows
        # still reaches every child instead of dying on the first line it reports.
        self.lost = False

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        try:
            yield
        except (OSError, ValueError):  # ValueError: a closed file object
            self.lost = True
            self._live = None

    def note(self, text: str) -> None:
        """A line of its own (startup steps, shutdown steps), above the live table if one is shown."""
        if self.lost:
            return
        with self._writing():
            if self._console is not None:
                self._console.print(text, highlight=False)
            else:
                print(text, file=self.out, flush=True)

    def update(self, now: float, elapsed: float, poll: Poll, children: Sequence[ChildStatus]) -> None:
        if poll.stats is not None:
            self.rates.add(now, poll.stats)
            self.last_stats = poll.stats
        if self.lost:
            return
        with self._writing():
            self._show(elapsed, poll, children)

    def _show(self, elapsed: float, poll: Poll, children: Sequence[ChildStatus]) -> None:
        if self._console is None:
            print(plain_line(elapsed, poll, self.rates), file=self.out, flush=True)
            return
        view = render(elapsed, poll, self.rates, children, self.urls, self.log_dir)
        if self._live is None:
            self._live = Live(view, console=self._console, auto_refresh=False, transient=False)
            self._live.start()
        self._live.update(view, refresh=True)

    def freeze(self) -> None:
        """Leave the last table on screen and print plainly from here on (shutdown steps)."""
        if self._live is not None and not self.lost:
            with self._writing():
                self._live.stop()
        self._live = None

    def close(self) -> None:
        self.freeze()
        self.note(totals_line(self.last_stats))
