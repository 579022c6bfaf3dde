"""ProcessorClient: the whole life of a processor built on the SDK.

    client = ProcessorClient(settings, "detector-1", ["object_detection"], detect)
    client.run_sync()          # or: await client.run()

``detect`` may be an ``async def`` or a plain ``def`` (run in a worker thread); a batch
handler is given as ``batch_process=`` instead (see ``frame_buffer_sdk.handlers``).

Lifecycle, in order (each hook below says who calls it and when):

0. ``on_start``     - called by ``run()`` first, before registering (load a model here).
1. ``register()``   - called by ``run()`` first: POST the spec until the orchestrator
   accepts it; its answer names the topic and consumer group to use.
2. ``consume()``    - called by ``run()`` next: the fetch/process/publish/commit loop
   (FramePipeline), until ``stop()`` or a signal. Usable alone, without the web API.
3. heartbeats       - a task ``run()`` keeps beside ``consume()``: every HEARTBEAT_INTERVAL.
4. ``stop()``       - called by you or by SIGTERM/SIGINT: says "draining", stops fetching,
   finishes and commits the batch in hand, deregisters, closes.
5. ``on_stop``      - called by ``run()`` last, after draining (and deregistering), whenever
   ``on_start`` succeeded, even if registering or consuming failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Iterator, Mapping
from typing import Any

import aiohttp
from prometheus_client import start_http_server

from frame_buffer_sdk.api import OrchestratorAPI, RegistrationAbandoned
from frame_buffer_sdk.handlers import AnyProcessFn, BatchProcessFn, Handler, Hook, call_hook, check_options
from frame_buffer_sdk.heap import freeze_long_lived
from frame_buffer_sdk.metrics import register_v1_aliases, set_build_info
from frame_buffer_sdk.models import ProcessorSpec, ProcessorStatus
from frame_buffer_sdk.pipeline import FramePipeline, PipelineConfig, PipelineStats
from frame_buffer_sdk.settings import ProcessorSettings
from frame_buffer_sdk.shutdown import stop_on_signals

log = logging.getLogger(__name__)


def default_replica_id() -> str:
    """Unique per process: two containers that both run as pid 1 differ by host and the random part."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class ProcessorClient:
    """A processor: its spec, its ``process`` function, and how it runs.

    ``process`` gets a :class:`frame_buffer_sdk.frame.Frame` (routed frame + pixel bytes) and returns
    a JSON-serialisable dict, published as the frame's FrameResult. It is an ``async def``
    (awaited on the loop) or a plain ``def`` (run in a pool of ``concurrency`` worker threads,
    so it never blocks fetching or heartbeats). ``capacity`` is how many frames of lag it can
    hold (the router's backpressure unit). ``stateful`` keeps each camera's frames in order
    (and asks the router for camera affinity); ``concurrency`` is how many frames of a batch
    may be in ``process`` at once.

    ``batch_process`` instead of ``process``: a list of up to ``max_batch`` frames in, one
    result per frame out, in order (the contract is in ``frame_buffer_sdk.handlers``);
    ``max_wait_ms`` is how long to go on collecting frames after the first ones came.
    ``max_batch`` also bounds a per-frame handler's fetch. ``timeout_seconds`` bounds one call
    (a frame, or a batch): past it, its frames are dead-lettered ``processing_timeout``.
    ``on_start`` and ``on_stop`` (async or plain, no arguments) run before registering and
    after draining.
    """

    def __init__(
        self,
        settings: ProcessorSettings,
        processor_id: str,
        capabilities: list[str],
        process: AnyProcessFn | None = None,
        capacity: int = 100,
        stateful: bool = False,
        partitions: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        concurrency: int = 1,
        *,
        batch_process: BatchProcessFn | None = None,
        max_batch: int = 100,
        max_wait_ms: float = 0,
        timeout_seconds: float | None = None,
        on_start: Hook | None = None,
        on_stop: Hook | None = None,
        register_timeout: float = 60.0,
        deregister_on_stop: bool = True,
        replica: str | None = None,
    ) -> None:
        self.settings = settings
        # Validates the id and capabilities now, not at the first HTTP call.
        self.spec = ProcessorSpec(
            id=processor_id,
            capabilities=capabilities,
            capacity=capacity,
            stateful=stateful,
            partitions=partitions,
            metadata=dict(metadata or {}),
        )
        # Told apart here, once: async or plain, one frame or a batch a call.
        self.handler = Handler.of(process, batch_process)
        check_options(self.handler, concurrency, max_batch, max_wait_ms, timeout_seconds)
        self.process = process
        self.batch_process = batch_process
        self.concurrency = concurrency
        self.max_batch = max_batch
        self.max_wait_ms = max_wait_ms
        self.timeout_seconds = timeout_seconds
        self.on_start = on_start
        self.on_stop = on_stop
        self.register_timeout = register_timeout
        # Replicas share one id; each names itself, and the orchestrator drops the id only when
        # the last live replica deregisters. Off: leave without a word (the health watch notices).
        self.deregister_on_stop = deregister_on_stop
        self.replica = replica or default_replica_id()
        self.topic = settings.ready_topic(processor_id)
        self.group = settings.processor_group(processor_id)
        self.record: dict[str, Any] | None = None
        self._stop = asyncio.Event()
        self._finished = asyncio.Event()
        self._active = False
        self._pipeline: FramePipeline | None = None
        self._api: OrchestratorAPI | None = None
        self._stats = PipelineStats()

    @property
    def processor_id(self) -> str:
        return self.spec.id

    @property
    def stats(self) -> PipelineStats:
        """Frames processed and dead-lettered (by reason) by the current or last run."""
        return self._pipeline.stats if self._pipeline is not None else self._stats

    # --- lifecycle -------------------------------------------------------------------------
    async def run(self, register: bool = True) -> None:
        """Register, consume until stopped, deregister. Installs SIGTERM/SIGINT handlers when
        run in the main thread; a second signal cancels without draining."""
        self._stop.clear()
        self._serve_metrics()
        with self._lifetime(), self._signals():
            # Not interruptible: a plain on_start runs in a thread, which cannot be stopped.
            await call_hook(self.on_start)
            try:
                if self._stop.is_set():
                    log.info("stopped while on_start ran: %s does not register", self.processor_id)
                elif register:
                    await self._run_registered()
                else:
                    await self.consume()
            finally:
                await call_hook(self.on_stop)

    def run_sync(self, register: bool = True) -> None:
        """``run()`` in a fresh event loop: the blocking entry of a processor process."""
        freeze_long_lived("processor start")
        asyncio.run(self.run(register=register))

    async def register(self) -> dict[str, Any]:
        """Called by ``run()`` before consuming, and again when a heartbeat finds the
        orchestrator has forgotten this processor. Retries up to ``register_timeout``."""
        if self._api is None:
            raise RuntimeError("register() needs run(register=True)")
        record = await self._api.register(
            self.spec, within=self.register_timeout, replica=self.replica, stop=self._stop
        )
        self.record = record
        # The orchestrator's answer is authoritative (it may map ids to topics differently).
        self.topic = str(record.get("topic") or self.topic)
        self.group = str(record.get("consumer_group") or self.group)
        log.info("registered processor %s: topic %s, group %s", self.processor_id, self.topic, self.group)
        return record

    async def consume(self) -> None:
        """Called by ``run()`` after registering; call it directly to consume without the web
        API. Returns once ``stop()`` was asked and the batch in hand is committed."""
        pipeline = FramePipeline(
            self.settings,
            PipelineConfig(
                processor_id=self.processor_id,
                topic=self.topic,
                group=self.group,
                concurrency=self.concurrency,
                stateful=self.spec.stateful,
                max_batch=self.max_batch,
                partitions=(self.record or {}).get("partitions") or self.spec.partitions,
                max_wait_ms=self.max_wait_ms,
                timeout_seconds=self.timeout_seconds,
            ),
            self.handler,
        )
        self._pipeline = pipeline
        with self._lifetime():
            try:
                await pipeline.start()
                await pipeline.run(self._stop)
            finally:
                await pipeline.close()

    def request_stop(self) -> None:
        """Ask a running client to drain and stop, without waiting; safe from signal handlers."""
        self._stop.set()

    async def stop(self) -> None:
        """Called by you (another task) or, through ``request_stop``, by SIGTERM/SIGINT: the
        heartbeat task says "draining" so the router stops sending, the batch in hand is
        finished and committed, the processor deregisters. Returns when ``run()`` has ended."""
        self._stop.set()
        if self._active:
            await self._finished.wait()

    @contextlib.contextmanager
    def _lifetime(self) -> Iterator[None]:
        """Marks the outermost of run()/consume() as running, for stop() to wait on."""
        outer = not self._active
        if outer:
            self._active = True
            self._finished.clear()
        try:
            yield
        finally:
            if outer:
                self._active = False
                self._finished.set()

    # --- helpers ---------------------------------------------------------------------------
    async def _run_registered(self) -> None:
        async with aiohttp.ClientSession() as session:
            self._api = OrchestratorAPI(session, self.settings.orchestrator_url, self.settings.orchestrator_token)
            try:
                try:
                    await self.register()
                except RegistrationAbandoned as exc:
                    log.info("%s", exc)
                if self._stop.is_set():
                    # Stopped while registering (a pod's SIGTERM right after its start): the
                    # orchestrator may hold this replica already, so it leaves as any replica does.
                    if self.deregister_on_stop:
                        await self._leave()
                    return
                beats = asyncio.create_task(self._heartbeats(), name=f"heartbeat-{self.processor_id}")
                try:
                    await self.consume()
                    # Lets the "draining" heartbeat go out before the processor leaves.
                    await asyncio.wait_for(asyncio.shield(beats), timeout=15)
                finally:
                    beats.cancel()
                    with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                        await beats
                if self.deregister_on_stop:
                    await self._deregister()
            finally:
                self._api = None

    async def _heartbeats(self) -> None:
        """Every HEARTBEAT_INTERVAL while running; once stop is asked, one "draining" beat
        (unless ``deregister_on_stop`` is off: then other replicas carry on under this id)."""
        assert self._api is not None
        while not self._stop.is_set():
            try:
                if not await self._api.heartbeat(self.processor_id, ProcessorStatus.HEALTHY.value, self.replica):
                    log.warning("orchestrator does not know processor %s; registering again", self.processor_id)
                    await self.register()
            except Exception as exc:  # the orchestrator restarting must not stop the work
                log.warning("heartbeat of %s failed: %r", self.processor_id, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self.settings.heartbeat_interval)
        if not self.deregister_on_stop:
            return  # another replica goes on under this id: it is not draining
        await self._say_draining()

    async def _say_draining(self) -> None:
        assert self._api is not None
        try:
            await self._api.heartbeat(self.processor_id, ProcessorStatus.DRAINING.value, self.replica)
        except Exception as exc:
            log.warning("draining heartbeat of %s failed: %r", self.processor_id, exc)

    async def _leave(self) -> None:
        """The draining beat first: with ADMIN_TOKEN set, the orchestrator lets a processor
        deregister itself only once it shows draining."""
        await self._say_draining()
        await self._deregister()

    async def _deregister(self) -> None:
        assert self._api is not None
        try:
            await self._api.deregister(self.processor_id, self.replica)
            log.info("deregistered replica %s of processor %s", self.replica, self.processor_id)
        except Exception as exc:  # the health watch will mark it unhealthy instead
            log.warning("could not deregister %s: %r", self.processor_id, exc)

    def _serve_metrics(self) -> None:
        port = self.settings.processor_metrics_port
        if not port:
            return
        set_build_info("processor")
        if self.settings.metrics_v1_aliases:
            register_v1_aliases()
        try:
            start_http_server(port, addr=self.settings.metrics_host)
        except OSError as exc:
            log.warning("cannot serve /metrics on port %d: %s", port, exc)
            return
        log.info("serving /metrics on %s:%d", self.settings.metrics_host, port)

    def _signals(self) -> contextlib.AbstractContextManager[None]:
        return stop_on_signals(
            self.request_stop, f"processor {self.processor_id}", self.settings.shutdown_grace_seconds
        )
