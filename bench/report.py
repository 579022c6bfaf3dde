"""Turns one benchmark run's results into <profile>.json, <profile>.md and <profile>.png.

Every number comes from the results dict of the run; a system that failed is shown as
failed with its error, and a target whose input is missing is "not measured", never met.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # the Agg backend is chosen before pyplot loads

OURS = "ours-1w"
MET, MISSED, UNMEASURED = "met", "missed", "not measured"


def _systems(results: dict[str, Any]) -> list[dict[str, Any]]:
    return list(results.get("systems", []))


def _by_key(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["key"]: s for s in _systems(results)}


def _rate(system: dict[str, Any] | None) -> float | None:
    if not system or not system.get("ok") or "throughput" not in system:
        return None
    tp = system["throughput"]
    return float(tp["rate"]) if tp.get("received") else None


def _latency_at(system: dict[str, Any] | None, offered: float) -> dict[str, Any] | None:
    if not system or not system.get("ok"):
        return None
    for row in system.get("latency", []):
        if row["offered"] == offered:
            return dict(row)
    return None


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _ratio(value: float | None, ours: float | None) -> str:
    if value is None or not ours:
        return "-"
    ratio = value / ours
    return f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.2g}x"


# --- targets ------------------------------------------------------------------------------
def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    systems = _by_key(results)
    ours = systems.get(OURS)
    out: list[dict[str, Any]] = []

    def add(name: str, measured: str, status: str) -> None:
        out.append({"target": name, "measured": measured, "status": status})

    rate = _rate(ours)
    drained = results.get("worker_drain") or {}
    alone = float(drained["frames_per_s"]) if drained.get("ok") else None
    # Judged on the stricter of the two: end to end, and the worker alone with nothing upstream.
    parts = [f"{rate:,.0f} frames/s end to end" if rate is not None else None]
    parts.append(f"{alone:,.0f} frames/s worker alone" if alone is not None else None)
    rates = [r for r in (rate, alone) if r is not None]
    add(
        ">= 10,000 frames/s through one worker",
        "; ".join(m for m in parts if m) or "-",
        UNMEASURED if not rates else MET if min(rates) >= 10_000 else MISSED,
    )
    at_1k = _latency_at(ours, 1000.0)
    p99 = at_1k.get("p99_ms") if at_1k else None
    if at_1k and "skipped" in at_1k:
        add("p99 <= 25 ms at 1,000 frames/s", at_1k["skipped"], MISSED)
    else:
        add(
            "p99 <= 25 ms at 1,000 frames/s",
            f"{p99:.1f} ms" + ("" if at_1k and at_1k.get("sustained") else " (not sustained)") if p99 else "-",
            UNMEASURED if p99 is None else MET if p99 <= 25 and at_1k and at_1k.get("sustained") else MISSED,
        )
    routing = results.get("routing_cost") or []
    if routing and all("mean_us" in r for r in routing):
        worst = max(float(r["mean_us"]) for r in routing)
        measured = ", ".join(f"{r['mode']} {r['mean_us']:.1f} µs (p99 {r['p99_us']:.1f})" for r in routing)
        add("routing decision <= 50 µs", measured, MET if worst <= 50 else MISSED)
    else:
        add("routing decision <= 50 µs", "-", UNMEASURED)
    null_rate = _rate(systems.get("null"))
    if rate is not None and null_rate:
        share = rate / null_rate
        add(">= 50% of the null pipeline", f"{share:.0%}", MET if share >= 0.5 else MISSED)
    else:
        add(">= 50% of the null pipeline", "-", UNMEASURED)
    fanout = systems.get("redis-fanout")
    compared: list[tuple[float, float | None, float]] = []
    for row in (ours or {}).get("latency", []) if ours and ours.get("ok") else []:
        other = _latency_at(fanout, row["offered"])
        if other and other.get("p99_ms") is not None:
            # A load ours could not take at all (skipped) counts against ours.
            compared.append((row["offered"], row.get("p99_ms"), other["p99_ms"]))
    if compared:
        text = "; ".join(
            f"{o:,.0f}/s: {'not sustained' if a is None else f'{a:.1f}'} vs {b:.1f} ms" for o, a, b in compared
        )
        add(
            "better p99 than plain Redis fan-out at the same load",
            text,
            MET if all(a is not None and a < b for _, a, b in compared) else MISSED,
        )
    else:
        add("better p99 than plain Redis fan-out at the same load", "-", UNMEASURED)
    out.extend(_hot_path_targets(results, systems))
    return out


def _hot_path_targets(results: dict[str, Any], systems: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 9's targets, each judged against the null pipeline of the same run."""
    ours, null = systems.get(OURS), systems.get("null")
    out: list[dict[str, Any]] = []
    for offered in (1_000.0, 5_000.0):
        mine, base = _latency_at(ours, offered), _latency_at(null, offered)
        name = f"{offered:,.0f} frames/s sustained, p99 <= 1.25x null's"
        if not mine or not base or mine.get("p99_ms") is None or base.get("p99_ms") is None:
            reason = (mine or {}).get("skipped") or "-"
            out.append({"target": name, "measured": reason, "status": MISSED if mine else UNMEASURED})
            continue
        ratio = mine["p99_ms"] / base["p99_ms"]
        ok = bool(mine.get("sustained")) and ratio <= 1.25
        measured = f"{mine['p99_ms']:.1f} vs {base['p99_ms']:.1f} ms ({ratio:.2f}x)" + (
            "" if mine.get("sustained") else ", not sustained"
        )
        out.append({"target": name, "measured": measured, "status": MET if ok else MISSED})
    out.append(_fanout_target(ours))
    one, two = _rate(ours), _rate(systems.get("ours-2w"))
    out.append(
        {
            "target": "2 workers no slower than 1",
            "measured": f"{two:,.0f} vs {one:,.0f} frames/s" if one and two else "-",
            "status": UNMEASURED if not (one and two) else MET if two >= one else MISSED,
        }
    )
    drained = results.get("worker_drain") or {}
    cpu = drained.get("worker_cpu_us_per_frame") if drained.get("ok") else None
    out.append(
        {
            "target": "worker alone <= 150 µs CPU per frame",
            "measured": f"{cpu:,.0f} µs at {drained.get('frames_per_record', 1)} frames per record" if cpu else "-",
            "status": UNMEASURED if cpu is None else MET if cpu <= 150 else MISSED,
        }
    )
    return out


FANOUT_RATE = 400.0
FANOUT_P99_MS = 100.0


def _fanout_target(ours: dict[str, Any] | None) -> dict[str, Any]:
    """Issue 9's end-to-end case: every frame to 3 processors at about 400 frames/s, p99 <= 100 ms."""
    name = f"fan-out to every processor at {FANOUT_RATE:,.0f} frames/s: p99 <= {FANOUT_P99_MS:,.0f} ms, nothing missing"
    rows = [r for r in (ours or {}).get("fanout", []) if r.get("offered") == FANOUT_RATE]
    if not rows or rows[0].get("p99_ms") is None:
        return {"target": name, "measured": "-", "status": UNMEASURED}
    row = rows[0]
    ok = bool(row.get("sustained")) and row["p99_ms"] <= FANOUT_P99_MS
    measured = f"p99 {row['p99_ms']:.1f} ms over {row['pairs']:,} pairs, {row['missing']:,} missing" + (
        "" if row.get("sustained") else ", not sustained"
    )
    return {"target": name, "measured": measured, "status": MET if ok else MISSED}


# --- markdown -----------------------------------------------------------------------------
def render_markdown(results: dict[str, Any], png_name: str) -> str:
    systems = _systems(results)
    by_key = _by_key(results)
    ours_rate = _rate(by_key.get(OURS))
    machine = results.get("machine", {})
    lines = [
        f"# Benchmark: profile `{results['profile']}`"
        + (f" (`{results['name']}`)" if results.get("name", results["profile"]) != results["profile"] else ""),
        "",
        f"Run {results.get('started_at', '?')}, {results.get('wall_seconds', 0):.0f} s wall, on "
        f"{machine.get('cpus', '?')} CPUs, Python {machine.get('python', '?')}, {machine.get('platform', '?')}; "
        f"Kafka: {machine.get('kafka', '?')}, Redis: {machine.get('redis', '?')}. "
        f"{results.get('cameras', '?')} cameras, {len(results.get('capabilities', []))} processors "
        f"(one per capability: {', '.join(results.get('capabilities', []))}).",
        "",
        *(
            ["**The worker ran under pyinstrument in this run: its numbers include the profiler's overhead.**", ""]
            if results.get("worker_profiled")
            else []
        ),
        f"![throughput and latency against offered load]({png_name})",
        "",
        "## Targets",
        "",
        "| target | measured | status |",
        "| --- | --- | --- |",
    ]
    for t in results.get("targets", []):
        lines.append(f"| {t['target']} | {t['measured']} | {t['status']} |")

    lines += [
        "",
        "## Throughput (flat-out blast, end to end: XADD/produce -> receiver)",
        "",
        "| system | role | frames | received | frames/s | x ours-1w | generator frames/s | p50 ms | p99 ms |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in systems:
        tp = s.get("throughput")
        if not s.get("ok"):
            lines.append(f"| {s['label']} | {s['role']} | failed: {_short(s.get('error'))} |||||||")
            continue
        if not tp:
            continue
        lines.append(
            f"| {s['label']} | {s['role']} | {_fmt(tp['frames'])} | {_fmt(tp['received'])} | {_fmt(tp['rate'], 0)} | "
            f"{_ratio(_rate(s), ours_rate)} | {_fmt(tp['send_rate'], 0)} | "
            f"{_fmt(tp['p50_ms'])} | {_fmt(tp['p99_ms'])} |"
        )
    checks = [s for s in systems if s.get("sustain_check")]
    if checks:
        lines += [
            "",
            "Sustain check: 90% of each system's blast rate offered, paced, for the profile's load duration.",
            "",
            "| system | offered/s | received/s | missing | sustained | p50 ms | p99 ms |",
            "| --- | ---: | ---: | ---: | :---: | ---: | ---: |",
        ]
        for s in checks:
            c = s["sustain_check"]
            lines.append(
                f"| {s['label']} | {_fmt(c['offered'], 0)} | {_fmt(c['receive_rate'], 0)} | {_fmt(c['missing'])} | "
                f"{_fmt(c['sustained'])} | {_fmt(c['p50_ms'])} | {_fmt(c['p99_ms'])} |"
            )

    plan = results.get("plan", {})
    lines += [
        "",
        "## Latency (captured_at -> receipt) at offered loads",
        "",
        f"Each load offered, paced, for {plan.get('load_seconds', '?')} s from {results.get('cameras', '?')} cameras. "
        "received/s: arrivals between the first and the last arrival. missing: not received within "
        f"{plan.get('drain_seconds', '?')} s after the last send. sustained: nothing missing and latency growing by "
        "at most 0.15 s per second offered (least-squares slope of latency against capture time; a system "
        "delivering a fraction f of the offered rate shows 1 - f), i.e. the backlog did not grow. "
        "A load above one not sustained is skipped: the backlog left behind would be measured, not the load.",
        "",
        "| offered/s | system | sent/s | received/s | missing | sustained | p50 ms | p95 ms | p99 ms | p99 x ours-1w |",
        "| ---: | --- | ---: | ---: | ---: | :---: | ---: | ---: | ---: | ---: |",
    ]
    offered = sorted({row["offered"] for s in systems if s.get("ok") for row in s.get("latency", [])})
    for load in offered:
        ours_row = _latency_at(by_key.get(OURS), load)
        ours_p99 = ours_row.get("p99_ms") if ours_row else None
        for s in systems:
            row = _latency_at(s, load)
            if row is None:
                continue
            if "skipped" in row:
                lines.append(f"| {_fmt(load, 0)} | {s['label']} | skipped: {row['skipped']} ||||||||")
                continue
            lines.append(
                f"| {_fmt(load, 0)} | {s['label']} | {_fmt(row['send_rate'], 0)} | {_fmt(row['receive_rate'], 0)} | "
                f"{_fmt(row['missing'])} | {_fmt(row['sustained'])} | {_fmt(row['p50_ms'])} | {_fmt(row['p95_ms'])} | "
                f"{_fmt(row['p99_ms'])} | {_ratio(row.get('p99_ms'), ours_p99)} |"
            )

    fanouts = [(s, row) for s in systems if s.get("ok") for row in s.get("fanout", [])]
    if fanouts:
        lines += [
            "",
            "## Fan-out (every frame asks for every capability: one routed copy per processor)",
            "",
            "Latency per (frame, processor) pair; missing: pairs not received within the drain window.",
            "",
            "| offered frames/s | system | pairs | missing | sustained | p50 ms | p95 ms | p99 ms | max ms |",
            "| ---: | --- | ---: | ---: | :---: | ---: | ---: | ---: | ---: |",
        ]
        for s, row in fanouts:
            lines.append(
                f"| {_fmt(row['offered'], 0)} | {s['label']} | {_fmt(row['pairs'])} | {_fmt(row['missing'])} | "
                f"{_fmt(row['sustained'])} | {_fmt(row['p50_ms'])} | {_fmt(row['p95_ms'])} | {_fmt(row['p99_ms'])} | "
                f"{_fmt(row['max_ms'])} |"
            )

    lines += [
        "",
        "## Peak memory (VmHWM of each service process)",
        "",
        "| system | process | peak RSS MiB |",
        "| --- | --- | ---: |",
    ]
    for s in systems:
        for proc, mb in (s.get("peak_rss_mb") or {}).items():
            lines.append(f"| {s['label']} | {proc} | {_fmt(mb)} |")

    drains = [results[k] for k in ("worker_drain", "worker_drain_single") if results.get(k)]
    if drains:
        lines += [
            "",
            "## One worker alone (frames produced straight into the captured topic; `bench/worker_drain.py`)",
            "",
            "| frames | frames per record | seconds | frames/s | worker CPU µs/frame | worker CPU share "
            "| idle CPU share | peak RSS MiB |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for drained in drains:
            if drained.get("ok"):
                lines.append(
                    f"| {drained['frames']:,} | {drained.get('frames_per_record', 1)} | {drained['seconds']:.2f} | "
                    f"{drained['frames_per_s']:,.0f} | {drained['worker_cpu_us_per_frame']:,.0f} | "
                    f"{drained['worker_cpu_share']:.2f} | {drained['worker_idle_cpu_share']:.2f} | "
                    f"{_fmt(drained.get('worker_peak_rss_mb'))} |"
                )
            else:
                lines.append(f"| {drained.get('frames', '?')} | failed: {_short(drained.get('error'))} |||||||")

    routing = results.get("routing_cost") or []
    if routing:
        lines += [
            "",
            "## Routing cost (agents.routing.Router, 50 processors, route() + record_sent() per decision)",
            "",
            "| mode | mean µs | p50 µs | p99 µs | decisions/s | update_view µs |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in routing:
            if "error" in r:
                lines.append(f"| {r.get('mode', '?')} | failed: {_short(r['error'])} |||||")
                continue
            lines.append(
                f"| {r['mode']} | {r['mean_us']:.2f} | {r['p50_us']:.2f} | {r['p99_us']:.2f} | "
                f"{r['decisions_per_second']:,.0f} | {r['update_view_us']:,.0f} |"
            )

    details = [(s, s.get("details")) for s in systems if s.get("details")]
    if details:
        lines += ["", "## What our services counted", ""]
        for s, d in details:
            lines.append(f"- {s['label']}: `{json.dumps(d, sort_keys=True)}`")
    failed = [s for s in systems if not s.get("ok")]
    if failed:
        lines += ["", "## Failed", ""]
        for s in failed:
            lines.append(f"- {s['label']}: {s.get('error')}")
    lines.append("")
    return "\n".join(lines)


def _short(text: Any, limit: int = 120) -> str:
    flat = " ".join(str(text or "").split()).replace("|", "/")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# --- plot -----------------------------------------------------------------------------------
_STYLE = {
    "ours-1w": ("tab:red", "o"),
    "ours-2w": ("tab:orange", "o"),
    "null": ("tab:gray", "s"),
    "raw-kafka": ("tab:blue", "^"),
    "raw-redis": ("tab:green", "v"),
    "redis-fanout": ("tab:purple", "D"),
}


def render_plot(results: dict[str, Any], path: Path) -> None:
    systems = [s for s in _systems(results) if s.get("ok")]
    fig, (ax_rate, ax_lat, ax_max) = plt.subplots(1, 3, figsize=(17, 6.4))
    offered_all: list[float] = []
    for s in systems:
        rows = [r for r in s.get("latency", []) if r.get("received")]
        if not rows:
            continue
        color, marker = _STYLE.get(s["key"], ("black", "x"))
        x = [r["offered"] for r in rows]
        offered_all += x
        ax_rate.plot(x, [r["receive_rate"] for r in rows], marker=marker, color=color, label=s["key"])
        ax_lat.plot(x, [r["p99_ms"] for r in rows], marker=marker, color=color, label=f"{s['key']} p99")
        ax_lat.plot(
            x,
            [r["p50_ms"] for r in rows],
            marker=marker,
            color=color,
            linestyle=":",
            alpha=0.7,
            label=f"{s['key']} p50",
        )
    if offered_all:
        lo, hi = min(offered_all), max(offered_all)
        ax_rate.plot([lo, hi], [lo, hi], color="black", linewidth=0.8, linestyle="--", label="received = offered")
    for ax in (ax_rate, ax_lat):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("offered load (frames/s)")
        ax.grid(True, which="both", alpha=0.3)
    ax_rate.set_ylabel("received (frames/s)")
    ax_rate.set_title("Throughput against offered load")
    if ax_rate.get_legend_handles_labels()[0]:
        ax_rate.legend(fontsize=8, loc="best")
    ax_lat.set_ylabel("latency captured -> receipt (ms)")
    ax_lat.set_title("Latency p50 (dotted) / p99 (solid)")
    ax_lat.axhline(25, color="black", linewidth=0.8, linestyle="--")
    if ax_lat.get_legend_handles_labels()[0]:
        ax_lat.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.14))

    bars = [(s["key"], _rate(s)) for s in systems if _rate(s) is not None]
    ax_max.barh(
        [k for k, _ in bars], [v or 0 for _, v in bars], color=[_STYLE.get(k, ("black", "x"))[0] for k, _ in bars]
    )
    for i, (_, v) in enumerate(bars):
        ax_max.text(v or 0, i, f" {v:,.0f}", va="center", fontsize=8)
    ax_max.axvline(10_000, color="black", linewidth=0.8, linestyle="--")
    ax_max.set_xlabel("frames/s (flat-out blast)")
    ax_max.set_title("Maximum end-to-end throughput")
    ax_max.invert_yaxis()
    fig.suptitle(f"Frame Buffer v2 benchmark, profile {results['profile']} ({results['machine'].get('cpus')} CPUs)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_reports(results: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    name = results.get("name") or results["profile"]
    results["targets"] = evaluate_targets(results)
    paths = {"json": out_dir / f"{name}.json", "md": out_dir / f"{name}.md", "png": out_dir / f"{name}.png"}
    paths["json"].write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    paths["md"].write_text(render_markdown(results, paths["png"].name))
    render_plot(results, paths["png"])
    return paths
