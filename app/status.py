"""`frame-orchestrator status`: the system at a glance, from one worker's REST API.

Like ``kafka-consumer-groups --describe`` for this system: the workers (routers) and the
captured partitions each owns, the router's lag per partition and its backpressure level,
every processor with its health, level and lag per partition, and the bridge backlog.

Everything comes from the worker at ``--url``: ``/ready`` (its health), ``/api/v1/backpressure``
(levels, lags, live bridges), ``/api/v1/frames/stats`` (totals), ``/api/v1/processors/``
(replicas) and Faust's ``/router/topics`` (which worker owns which partition); each worker
named there is asked for its own ``/ready``. With no live bridge reporting, the backlog is
read from Redis (XINFO GROUPS on CAPTURE_STREAM) when REDIS_URL answers.
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from frame_buffer_sdk.errors import FrameBufferError
from frame_buffer_sdk.redis_connection import RedisConnection

REQUEST_TIMEOUT_SECONDS = 10.0
PEER_TIMEOUT_SECONDS = 3.0
REDIS_TIMEOUT_SECONDS = 3.0
LEVEL_STYLES = {"NORMAL": "green", "ELEVATED": "yellow", "HIGH": "dark_orange", "CRITICAL": "bold red"}
STATUS_STYLES = {"healthy": "green", "draining": "yellow", "unhealthy": "red", "stalled": "red"}


class StatusError(FrameBufferError):
    """The worker could not be asked (unreachable, refused the token, not a worker): exit non-zero."""


@dataclass(frozen=True)
class Target:
    url: str
    token: str | None = None
    captured_topic: str = "frames.captured"
    timeout: float = REQUEST_TIMEOUT_SECONDS

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


@dataclass(frozen=True)
class StreamSource:
    """Where the bridge backlog is read when no bridge reports it: the capture stream's group."""

    redis: RedisConnection
    stream: str
    group: str


async def _get(session: aiohttp.ClientSession, url: str, seconds: float) -> tuple[int, Any]:
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=seconds)) as resp:
        try:
            body = await resp.json(content_type=None)
        except ValueError:
            body = None
        return resp.status, body


async def _required(session: aiohttp.ClientSession, target: Target, path: str) -> Any:
    url = f"{target.url}{path}"
    try:
        status, body = await _get(session, url, target.timeout)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise StatusError(f"cannot reach the worker at {target.url}: {exc or type(exc).__name__}") from None
    _refused(target, path, status, body)
    if status != 200 or body is None:
        raise StatusError(f"{url} answered {status}: not a frame-orchestrator worker, or not ready")
    return body


def _refused(target: Target, path: str, status: int, body: Any) -> None:
    if status in (401, 403):
        detail = body.get("detail") if isinstance(body, dict) else ""
        hint = "set API_TOKEN (or ADMIN_TOKEN), or pass --token" if status == 401 else "the token is not valid here"
        raise StatusError(f"the worker at {target.url} refused {path} ({status}: {detail}); {hint}")


async def _optional(session: aiohttp.ClientSession, url: str, headers: dict[str, str], seconds: float) -> Any:
    """A body, or ``{"error": ...}``: peers and Faust's views may be missing without failing the report."""
    try:
        async with session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=seconds)) as resp:
            body = await resp.json(content_type=None)
            if isinstance(body, dict) and resp.status not in (200, 503):
                return {"error": f"HTTP {resp.status}: {body.get('detail', '')}".rstrip(": ")}
            return body
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
        return {"error": str(exc) or type(exc).__name__}


async def collect(target: Target, stream: StreamSource | None = None) -> dict[str, Any]:
    """The status report as plain data (what ``--json`` prints)."""
    async with aiohttp.ClientSession(headers=target.headers) as session:
        try:
            status, health = await _get(session, f"{target.url}/ready", target.timeout)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise StatusError(f"cannot reach the worker at {target.url}: {exc or type(exc).__name__}") from None
        _refused(target, "/ready", status, health)
        if not isinstance(health, dict) or "ready" not in health:
            raise StatusError(f"{target.url}/ready answered {status}: not a frame-orchestrator worker")
        backpressure, stats, registry = await asyncio.gather(
            _required(session, target, "/api/v1/backpressure"),
            _required(session, target, "/api/v1/frames/stats"),
            _required(session, target, "/api/v1/processors/"),
        )
        topics = await _optional(session, f"{target.url}/router/topics", {}, target.timeout)
        workers = await _workers(session, target, topics)
    router = backpressure.get("router") or {}
    owners = {p: w["url"] for w in workers for p in w["partitions"]}
    partitions = {int(p): int(lag or 0) for p, lag in (router.get("partitions") or {}).items()}
    report: dict[str, Any] = {
        "url": target.url,
        "at": datetime.now(UTC).isoformat(),
        "health": health,
        "workers": workers,
        "router": {
            "level": router.get("level") or "NORMAL",
            "lag": int(router.get("lag") or 0),
            "partitions": [
                {"partition": p, "lag": partitions.get(p, 0), "worker": owners.get(p)}
                for p in sorted(set(partitions) | set(owners))
            ],
            **({"error": router["error"]} if router.get("error") else {}),
        },
        "processors": _processors(backpressure, stats, registry),
        "bridges": backpressure.get("bridges") or [],
        "bridge_backlog": await _backlog(backpressure.get("bridges") or [], stream),
        "totals": {
            name: stats.get(name, 0) for name in ("captured", "routed", "processed", "shed", "deduplicated", "rerouted")
        }
        | {"dead_lettered": sum(int(v) for v in (stats.get("dead_lettered") or {}).values())},
        "dead_lettered": stats.get("dead_lettered") or {},
    }
    return report


async def _workers(session: aiohttp.ClientSession, target: Target, topics: Any) -> list[dict[str, Any]]:
    """Every worker that owns partitions of the captured topic (Faust's assignment), with its /ready."""
    if not isinstance(topics, dict) or "error" in topics:
        error = topics.get("error") if isinstance(topics, dict) else "no answer"
        return [{"url": target.url, "partitions": [], "ready": None, "error": f"/router/topics: {error}"}]
    owned: dict[str, list[int]] = {}
    for host, by_topic in topics.items():
        if isinstance(by_topic, dict):
            owned[str(host).rstrip("/")] = sorted(int(p) for p in by_topic.get(target.captured_topic, []))
    replies = await asyncio.gather(
        *(_optional(session, f"{url}/ready", target.headers, PEER_TIMEOUT_SECONDS) for url in owned)
    )
    workers = []
    for (url, parts), reply in zip(owned.items(), replies, strict=True):
        entry: dict[str, Any] = {"url": url, "partitions": parts, "ready": None}
        if isinstance(reply, dict) and "ready" in reply:
            entry["ready"] = bool(reply["ready"])
            entry["boot_id"] = reply.get("boot_id")
            entry["routing_stuck_seconds"] = reply.get("routing_stuck_seconds")
        else:
            entry["error"] = reply.get("error") if isinstance(reply, dict) else "no answer"
        workers.append(entry)
    return sorted(workers, key=lambda w: (w["partitions"][:1] or [1 << 30], w["url"]))


def _processors(backpressure: dict[str, Any], stats: dict[str, Any], registry: Any) -> list[dict[str, Any]]:
    records = {r["id"]: r for r in registry if isinstance(r, dict) and "id" in r} if isinstance(registry, list) else {}
    counts = stats.get("processors") or {}
    out = []
    for pid, p in sorted((backpressure.get("processors") or {}).items()):
        record = records.get(pid, {})
        out.append(
            {
                "id": pid,
                "status": p.get("status"),
                "status_reason": p.get("status_reason", ""),
                "level": p.get("level"),
                "lag": int(p.get("lag") or 0),
                "capacity": p.get("capacity"),
                "utilisation": p.get("utilisation"),
                "capabilities": p.get("capabilities", []),
                "replicas": len(record.get("replicas") or {}),
                "topic": record.get("topic"),
                "consumer_group": record.get("consumer_group"),
                "partitions": [
                    {"partition": int(n), "lag": int(lag or 0)}
                    for n, lag in sorted((p.get("partitions") or {}).items(), key=lambda kv: int(kv[0]))
                ],
                "routed": (counts.get(pid) or {}).get("routed", 0),
                "processed": (counts.get(pid) or {}).get("processed", 0),
                "dead_lettered": (counts.get(pid) or {}).get("dead_lettered", 0),
                "last_heartbeat": p.get("last_heartbeat"),
            }
        )
    return out


async def _backlog(bridges: list[dict[str, Any]], stream: StreamSource | None) -> dict[str, Any]:
    """The capture stream's unread and pending entries: the freshest live bridge's report, else Redis."""
    if bridges:
        latest = max(bridges, key=lambda b: str(b.get("at") or ""))
        return {"source": "bridge", "backlog": latest.get("backlog"), "pending": latest.get("pending")}
    if stream is None:
        return {"source": None, "backlog": None, "pending": None, "error": "no live bridge reports it"}
    try:
        return await asyncio.wait_for(stream_backlog(stream), REDIS_TIMEOUT_SECONDS)
    except Exception as exc:  # any Redis failure: the report still answers, saying why
        detail = str(exc) or type(exc).__name__
        return {"source": None, "backlog": None, "pending": None, "error": f"no live bridge; redis: {detail}"}


async def stream_backlog(stream: StreamSource) -> dict[str, Any]:
    """XINFO GROUPS on the capture stream: the bridges' group's lag (unread) and pending (unacked)."""
    client = stream.redis.client(socket_timeout=REDIS_TIMEOUT_SECONDS, socket_connect_timeout=REDIS_TIMEOUT_SECONDS)
    try:
        if not await client.exists(stream.stream):
            return {"source": "redis", "backlog": 0, "pending": 0, "error": f"stream {stream.stream!r} does not exist"}
        for info in await client.xinfo_groups(stream.stream):
            name = info.get("name")
            if (name.decode() if isinstance(name, bytes) else str(name)) != stream.group:
                continue
            lag = info.get("lag")
            if lag is None:  # Redis cannot tell after deletions inside the stream; the length bounds it
                lag = await client.xlen(stream.stream)
            return {"source": "redis", "backlog": int(lag), "pending": int(info.get("pending") or 0)}
        length = int(await client.xlen(stream.stream))
        return {"source": "redis", "backlog": length, "pending": 0, "error": f"group {stream.group!r} not created yet"}
    finally:
        await client.aclose()


# --- the table -------------------------------------------------------------------------


def _level(level: Any) -> Text:
    text = str(level or "-")
    return Text(text, style=LEVEL_STYLES.get(text, ""))


def _status(status: Any) -> Text:
    text = str(status or "-")
    return Text(text, style=STATUS_STYLES.get(text, ""))


def _ready(value: Any) -> Text:
    if value is None:
        return Text("unknown", style="yellow")
    return Text("ready", style="green") if value else Text("NOT READY", style="bold red")


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:,}" if isinstance(value, int) else str(value)


def renderables(report: dict[str, Any]) -> Group:
    health = report["health"]
    failing = [name for name in ("redis", "kafka", "recovered", "routing_alive") if health.get(name) is False]
    head = Text.assemble(
        ("worker ", "bold"),
        report["url"],
        "  ",
        _ready(health.get("ready")),
        f"  partitions assigned {health.get('partitions_assigned', '-')}",
        (f"  failing: {', '.join(failing)}" if failing else ""),
    )
    totals = report["totals"]
    summary = Text("  ".join(f"{name} {_num(value)}" for name, value in totals.items()))

    workers = Table(title="Workers (routers)", title_justify="left", expand=False)
    for column in ("WORKER", "CAPTURED PARTITIONS", "HEALTH", "BOOT"):
        workers.add_column(column)
    for w in report["workers"]:
        health_cell = _ready(w.get("ready")) if not w.get("error") else Text(f"error: {w['error']}", style="red")
        workers.add_row(w["url"], ",".join(map(str, w["partitions"])) or "-", health_cell, str(w.get("boot_id") or "-"))

    router = report["router"]
    router_line = Text.assemble(
        ("router ", "bold"), "level ", _level(router["level"]), f"  lag {router['lag']:,} (captured topic)"
    )
    if router.get("error"):
        router_line.append(f"  {router['error']}", style="red")
    lags = Table(title="Router lag per captured partition", title_justify="left")
    for column, justify in (("PARTITION", "right"), ("LAG", "right"), ("WORKER", "left")):
        lags.add_column(column, justify=justify)  # type: ignore[arg-type]
    for p in router["partitions"]:
        lags.add_row(str(p["partition"]), f"{p['lag']:,}", p["worker"] or "-")

    procs = Table(title="Processors", title_justify="left")
    for column, justify in (
        ("PROCESSOR", "left"),
        ("STATUS", "left"),
        ("LEVEL", "left"),
        ("LAG/CAPACITY", "right"),
        ("REPLICAS", "right"),
        ("CAPABILITIES", "left"),
        ("ROUTED", "right"),
        ("PROCESSED", "right"),
        ("DEAD", "right"),
    ):
        procs.add_column(column, justify=justify)  # type: ignore[arg-type]
    parts = Table(title="Processor lag per partition", title_justify="left")
    for column, justify in (("PROCESSOR", "left"), ("TOPIC", "left"), ("PARTITION", "right"), ("LAG", "right")):
        parts.add_column(column, justify=justify)  # type: ignore[arg-type]
    for p in report["processors"]:
        status = _status(p["status"])
        if p.get("status_reason"):
            status.append(f" ({p['status_reason']})", style="dim")
        procs.add_row(
            p["id"],
            status,
            _level(p["level"]),
            f"{p['lag']:,} / {_num(p['capacity'])}",
            str(p["replicas"]),
            ",".join(p["capabilities"]),
            _num(p["routed"]),
            _num(p["processed"]),
            _num(p["dead_lettered"]),
        )
        for part in p["partitions"]:
            parts.add_row(p["id"], str(p.get("topic") or "-"), str(part["partition"]), f"{part['lag']:,}")

    backlog = report["bridge_backlog"]
    line = Text.assemble(
        ("bridge backlog ", "bold"),
        f"{_num(backlog.get('backlog'))} unread, {_num(backlog.get('pending'))} pending",
        f" (from {backlog['source']})" if backlog.get("source") else "",
    )
    if backlog.get("error"):
        line.append(f"  {backlog['error']}", style="yellow")
    bridges = Table(title="Bridges", title_justify="left")
    for column, justify in (
        ("BRIDGE", "left"),
        ("STATE", "left"),
        ("BACKLOG", "right"),
        ("PENDING", "right"),
        ("RATE/S", "right"),
    ):
        bridges.add_column(column, justify=justify)  # type: ignore[arg-type]
    for b in report["bridges"]:
        bridges.add_row(
            str(b.get("consumer")),
            str(b.get("state")),
            _num(b.get("backlog")),
            _num(b.get("pending")),
            _num(b.get("rate")),
        )
    dead = report.get("dead_lettered") or {}
    dead_line = Text("dead letters by reason: " + (", ".join(f"{k} {v:,}" for k, v in sorted(dead.items())) or "none"))
    parts_shown: list[Any] = [head, summary, dead_line, workers, router_line, lags, procs]
    if parts.row_count:
        parts_shown.append(parts)
    parts_shown.append(line)
    if bridges.row_count:
        parts_shown.append(bridges)
    return Group(*parts_shown)


def render(report: dict[str, Any], width: int = 120, color: bool = False) -> str:
    """The report as the table ``status`` prints (plain text unless ``color``)."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system="standard" if color else None, force_terminal=color)
    console.print(renderables(report))
    return buffer.getvalue()
