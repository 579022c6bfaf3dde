"""Reading v1's state and our migration marker from Redis into a ``Snapshot``."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from frame_buffer_sdk.keys import migration_marker_key
from migrate.plan import Marker, Snapshot, V1Group
from migrate.v1 import V1Names

PAGE = 1000


async def _groups(redis: Redis, stream: str) -> dict[str, dict[str, Any]]:
    try:
        return {str(info["name"]): info for info in await redis.xinfo_groups(stream)}
    except ResponseError as exc:
        if "no such key" in str(exc).lower():
            return {}
        raise


async def _pending_ids(redis: Redis, stream: str, group: str) -> list[str]:
    ids: list[str] = []
    low = "-"
    while True:
        page = await redis.xpending_range(stream, group, min=low, max="+", count=PAGE)
        ids.extend(str(item["message_id"]) for item in page)
        if len(page) < PAGE:
            return ids
        low = f"({ids[-1]}"


async def _present(redis: Redis, stream: str, ids: list[str]) -> set[str]:
    present: set[str] = set()
    for start in range(0, len(ids), PAGE):
        chunk = ids[start : start + PAGE]
        async with redis.pipeline(transaction=False) as pipe:
            for sid in chunk:
                pipe.xrange(stream, min=sid, max=sid, count=1)
            replies = await pipe.execute()
        present.update(sid for sid, reply in zip(chunk, replies, strict=True) if reply)
    return present


async def _entries(redis: Redis, stream: str, after: str | None = None) -> list[tuple[str, dict[str, str]]]:
    out: list[tuple[str, dict[str, str]]] = []
    low = "-" if after is None else f"({after}"
    while True:
        page: Any = await redis.xrange(stream, min=low, max="+", count=PAGE)
        out.extend((str(sid), dict(fields)) for sid, fields in page)
        if len(page) < PAGE:
            return out
        low = f"({out[-1][0]}"


async def read_marker(redis: Redis, app_id: str) -> Marker:
    raw: Any = await redis.hgetall(migration_marker_key(app_id))  # type: ignore[misc]
    return Marker(
        finished_at=raw.get("finished_at"),
        group_done=raw.get("group_done") == "1",
        registry_done=raw.get("registry_done") == "1",
        dlq_through=raw.get("dlq_through"),
    )


async def read_snapshot(redis: Redis, *, app_id: str, stream: str, group: str, names: V1Names) -> Snapshot:
    """Everything the plan needs. ``redis`` must decode responses (v1 wrote text)."""
    marker = await read_marker(redis, app_id)
    groups = await _groups(redis, stream)
    v1_group = None
    info = groups.get(names.group)
    if info is not None:
        pending = await _pending_ids(redis, stream, names.group)
        present = await _present(redis, stream, pending)
        consumers: Any = await redis.xinfo_consumers(stream, names.group)
        v1_group = V1Group(
            last_delivered=str(info["last-delivered-id"]),
            pending=tuple(sid for sid in pending if sid in present),
            pending_gone=tuple(sid for sid in pending if sid not in present),
            idle_ms=min((int(c["idle"]) for c in consumers), default=None),
        )
    registry: Any = await redis.hgetall(names.registry)  # type: ignore[misc]
    return Snapshot(
        stream=stream,
        group=group,
        names=names,
        v1_group=v1_group,
        our_group_exists=group in groups,
        queue=tuple(await _entries(redis, names.queue)),
        dlq=tuple(await _entries(redis, names.dlq, marker.dlq_through)),
        registry=tuple(sorted(registry.items())),
        marker=marker,
    )
