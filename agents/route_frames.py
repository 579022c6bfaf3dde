"""route_frames: frames.captured -> frames.ready.<processor>, one decision per capability.

The decisions are agents.routing's (pure code); this module only applies them to Kafka
and the tables: dedupe, affinity, dead letters, holding frames when everything is full.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace
from pydantic import ValidationError

from agents.dedupe import dedupe_key
from agents.routing import Action, Decision, Router
from app.context import Orchestrator
from app.deadletter import dead_letter_frame
from app.metrics import FRAMES_DEDUPED, FRAMES_ROUTED, FRAMES_SHED, ROUTING_LATENCY
from app.models import FrameEvent, RoutedFrame
from app.telemetry import context_from_headers, context_from_traceparent, headers_for, tracer

log = logging.getLogger(__name__)
_TRACER = tracer("frame_buffer.router")
HOLD_POLL_SECONDS = 0.2
REFRESH_ON_MISS_SECONDS = 0.1


def waiting_key(camera_id: str, capability: str) -> str:
    return f"{camera_id}|{capability}"


class FrameRouting:
    """Applies routing decisions for one worker. Called only from inside agent streams."""

    def __init__(self, orch: Orchestrator, router: Router, refresh_view: Callable[[], None] | None = None) -> None:
        self.orch = orch
        self.router = router
        self.protected_priority = orch.settings.protected_priority
        # Re-reads the registry into the router; used before dead-lettering a frame for want
        # of a processor that may have registered since the last periodic refresh.
        self._refresh_view = refresh_view
        self._refreshed_at = float("-inf")

    # --- entry points (one per agent) -------------------------------------------------
    async def on_captured(self, event: Any) -> None:
        started = time.perf_counter()
        frame = await self._parse(event.value, event.key)
        if frame is None:
            return
        rerouted_from = frame.metadata.get("rerouted_from")
        if not rerouted_from:
            self.orch.counters.captured += 1
        parent = context_from_headers(_headers(event)) or context_from_traceparent(frame.traceparent, frame.tracestate)
        origin = _origin(event)
        affinity: dict[str, str] = self.orch.tables.affinity[frame.camera_id]
        decisions = self.router.route(frame.capabilities, frame.camera_id, frame.priority, affinity)
        if any(d.action is Action.DEAD_LETTER for d in decisions) and self._refreshed_view():
            decisions = self.router.route(frame.capabilities, frame.camera_id, frame.priority, affinity)
        affinity_changed = False
        for decision in decisions:
            if self._is_duplicate(frame, decision.capability, rerouted_from, origin):
                continue
            while decision.action is Action.HOLD and (frame.priority >= self.protected_priority or rerouted_from):
                # Protected frames are never shed, nor are frames moved off a failed
                # processor (they have waited already): this agent stops here, so Kafka
                # holds the partition's later frames until the capability has room again.
                await asyncio.sleep(HOLD_POLL_SECONDS)
                decision = self.router.route([decision.capability], frame.camera_id, frame.priority, affinity)[0]
            if decision.action is Action.HOLD:
                await self._hold(frame, decision.capability)
            elif decision.action is Action.DEAD_LETTER:
                await dead_letter_frame(
                    self.orch,
                    decision.reason,
                    f"no healthy processor offers {decision.capability!r}",
                    frame,
                    capability=decision.capability,
                )
            else:
                await self._send(frame, decision, parent, origin)
                pid = decision.processor_id
                if decision.new_affinity and pid is not None and affinity.get(decision.capability) != pid:
                    affinity = {**affinity, decision.capability: pid}
                    affinity_changed = True
        if affinity_changed:
            # Reassign, never mutate in place: only assignments reach the changelog.
            self.orch.tables.affinity[frame.camera_id] = affinity
        ROUTING_LATENCY.observe(time.perf_counter() - started)

    async def on_waiting(self, event: Any) -> None:
        """A held, shed-able frame: sent when there is room, shed if a newer one of its camera waits."""
        held = json.loads(event.value)
        frame = FrameEvent.model_validate(held["frame"])
        capability: str = held["capability"]
        latest = self.orch.tables.waiting
        key = waiting_key(frame.camera_id, capability)
        parent = context_from_headers(_headers(event))
        while True:
            if latest[key] != frame.frame_id:
                await self._shed(frame, capability, "shed", "a newer frame of this camera is waiting")
                return
            affinity: dict[str, str] = self.orch.tables.affinity[frame.camera_id]
            decision = self.router.route([capability], frame.camera_id, frame.priority, affinity)[0]
            if decision.action is Action.SEND:
                await self._send(frame, decision, parent, _origin(event, "w"))
                return
            if decision.action is Action.DEAD_LETTER:
                await dead_letter_frame(
                    self.orch,
                    decision.reason,
                    f"no healthy processor offers {capability!r}",
                    frame,
                    capability=capability,
                )
                return
            await asyncio.sleep(HOLD_POLL_SECONDS)

    # --- steps ------------------------------------------------------------------------------
    def _refreshed_view(self) -> bool:
        """Refresh the view now, at most every REFRESH_ON_MISS_SECONDS (a stream of frames for a
        capability nobody offers must not rebuild it per frame). True when it did."""
        now = time.monotonic()
        if self._refresh_view is None or now - self._refreshed_at < REFRESH_ON_MISS_SECONDS:
            return False
        self._refreshed_at = now
        self._refresh_view()
        return True

    async def _parse(self, value: bytes, key: Any) -> FrameEvent | None:
        try:
            return FrameEvent.model_validate_json(value)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "record"
            self.orch.counters.captured += 1
            await dead_letter_frame(
                self.orch,
                "invalid_frame",
                f"{where}: {err['msg']}",
                raw={"key": _text(key), "value": _text(value)},
                key=key if isinstance(key, bytes) else b"",
            )
            return None

    def _is_duplicate(self, frame: FrameEvent, capability: str, rerouted_from: Any, origin: str) -> bool:
        """A pair routed before from ANOTHER record is a duplicate.

        The same record seen again (a replay after a worker crash, same partition and
        offset) is routed again: its first send may never have reached Kafka, since the
        table's changelog write and the routed record are not atomic. The processor SDK
        drops a pair it already finished, so a replay costs a re-send, never a loss.
        """
        window = self.orch.tables.dedupe[dedupe_key(frame.frame_id, capability)]
        seen = window.now() or window.delta(self.orch.settings.dedupe_window_seconds)
        if not seen:
            return False
        seen_pid, _, seen_origin = seen.partition("@")
        if seen_origin == origin or (rerouted_from and seen_pid == rerouted_from):
            return False
        self.orch.counters.deduplicated += 1
        FRAMES_DEDUPED.inc()
        return True

    async def _send(self, frame: FrameEvent, decision: Decision, parent: Any, origin: str) -> None:
        pid = decision.processor_id
        assert pid is not None
        routed = RoutedFrame.model_construct(
            **dict(frame), processor_id=pid, capability=decision.capability, routed_at=datetime.now(UTC)
        )
        with _TRACER.start_as_current_span(
            "router.route",
            context=parent,
            kind=trace.SpanKind.PRODUCER,
            attributes={
                "frame.id": frame.frame_id,
                "camera.id": frame.camera_id,
                "frame.capability": decision.capability,
                "processor.id": pid,
                "routing.reason": decision.reason,
            },
        ):
            headers = headers_for()
        await self.orch.topics.ready(pid).send(
            key=frame.camera_id.encode(), value=routed.model_dump_json().encode(), headers=headers
        )
        self.orch.tables.dedupe[dedupe_key(frame.frame_id, decision.capability)] = f"{pid}@{origin}"
        self.router.record_sent(pid, time.time())
        counters = self.orch.counters
        counters.routed += 1
        counters.routed_by_processor[pid] += 1
        if frame.metadata.get("rerouted_from"):
            counters.rerouted += 1
        FRAMES_ROUTED.labels(pid, decision.capability).inc()

    async def _hold(self, frame: FrameEvent, capability: str) -> None:
        """Every processor for the capability is CRITICAL: the frame waits in Kafka, newest per camera."""
        self.orch.tables.waiting[waiting_key(frame.camera_id, capability)] = frame.frame_id
        payload = json.dumps({"frame": frame.model_dump(mode="json"), "capability": capability}).encode()
        await self.orch.topics.waiting.send(key=frame.camera_id.encode(), value=payload, headers=headers_for())

    async def _shed(self, frame: FrameEvent, capability: str, reason: str, detail: str) -> None:
        counters = self.orch.counters
        counters.shed += 1
        counters.shed_by_camera[frame.camera_id] += 1
        counters.shed_by_reason[reason] += 1
        FRAMES_SHED.labels(frame.camera_id, reason).inc()
        await dead_letter_frame(self.orch, reason, detail, frame, capability=capability, shed=True)


def _origin(event: Any, prefix: str = "") -> str:
    """Where a record sits in Kafka: the same record replayed has the same origin."""
    message = event.message
    return f"{prefix}{message.partition}:{message.offset}"


def _headers(event: Any) -> Any:
    headers = getattr(event, "headers", None)
    if headers is None and getattr(event, "message", None) is not None:
        headers = event.message.headers
    return headers


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return "" if value is None else str(value)
