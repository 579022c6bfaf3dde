"""The benchmark harness runs end to end and writes its three files (tiny sizes, no timed assertions)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.devstack import DevStack

pytestmark = pytest.mark.integration

# Our pipeline plus one baseline of each exit kind: Kafka receivers (null) and Redis stream receivers (fan-out).
SYSTEMS = "ours-1w,null,redis-fanout"


def test_smoke_profile_writes_results(stack: DevStack, tmp_path: Path) -> None:
    env = {**os.environ, **stack.env()}
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--profile", "smoke", "--systems", SYSTEMS, "--out", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    results = json.loads((tmp_path / "smoke-subset.json").read_text())
    assert [s["key"] for s in results["systems"]] == SYSTEMS.split(",")
    for system in results["systems"]:
        assert system["ok"], system.get("error")
        assert system["throughput"]["received"] == system["throughput"]["frames"]
        assert [row["offered"] for row in system["latency"]] == [100.0, 400.0]
        # A step may be skipped when the one below was judged not sustained (tiny steps are noisy).
        assert system["latency"][0]["received"] > 0
        assert all("skipped" in row or row["p99_ms"] is not None for row in system["latency"])
    ours = results["systems"][0]
    # Every fan-out frame reaches each of the three processors: 100 frames/s for 0.5 s is 150 pairs.
    (fanout,) = ours["fanout"]
    assert (fanout["offered"], fanout["pairs"]) == (100.0, 150)
    assert fanout["received"] == fanout["pairs"] - fanout["missing"] > 0
    assert not any("fanout" in s for s in results["systems"][1:])
    assert set(ours["peak_rss_mb"]) == {"worker-0", "bridge"}
    assert all(mb and mb > 0 for mb in ours["peak_rss_mb"].values())
    assert {r["mode"] for r in results["routing_cost"]} == {"stateless", "stateful"}
    drained = results["worker_drain"]
    assert drained["ok"] and drained["frames"] == 300, drained
    assert drained["frames_per_s"] > 0 and drained["worker_cpu_us_per_frame"] > 0
    assert {t["target"] for t in results["targets"]} >= {"routing decision <= 50 µs", ">= 50% of the null pipeline"}

    markdown = (tmp_path / "smoke-subset.md").read_text()
    headings = (
        "## Targets",
        "## Throughput",
        "## Latency",
        "## Fan-out",
        "## Peak memory",
        "## One worker alone",
        "## Routing cost",
    )
    for heading in headings:
        assert heading in markdown
    assert (tmp_path / "smoke-subset.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
