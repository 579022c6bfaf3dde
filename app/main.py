"""The Faust app of Frame Buffer v2: built from Settings, explicitly wired, run as a worker.

``create_worker_app`` declares topics, tables, agents, timers and web views on a new
faust.App; nothing registers itself as an import side effect. ``run_worker`` is the
entrypoint (CLI ``frame-orchestrator worker``, ``python -m app.main``). The module attribute
``app`` is that app built from the environment on first access, for Faust's own command line
(``faust -A app.main worker``, ``tables``, ``agents``, ``send``, ...); its ``Worker`` setting
is ``GracefulWorker``, so ``faust -A app.main worker`` starts what ``run_worker`` starts.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, cast

import faust
import mode
from aiohttp.web import Response
from faust import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from agents.count_results import register_count_dead_letters, register_count_results
from agents.folds import register_folds
from agents.route_frames import FrameRouting
from agents.routing import STALE_AFTER_SAMPLE_INTERVALS, Router
from agents.sender import KafkaSender, RecordSender
from agents.stats_ledger import register_stats_ledger
from agents.watch_health import register_watch_health
from agents.worker_timers import refresh_view, register_worker_timers
from app.camera_grid import register_camera_grid
from app.configs import health_watch_config, registry_config, routing_config
from app.readiness import BrokerProbe, register_health_views
from app.transport import app_with_fetch_wait, faust_credentials
from app.web import WebConfig, register_web
from core.context import Orchestrator, Tables
from core.metrics import export_build_info, register_v1_aliases
from core.settings import Settings, load_settings
from core.topics import define_topics
from frame_buffer_sdk.errors import or_exit
from frame_buffer_sdk.heap import freeze_long_lived
from frame_buffer_sdk.kafka import ensure_topics
from frame_buffer_sdk.logs import setup_logging
from frame_buffer_sdk.shutdown import exit_after
from frame_buffer_sdk.telemetry import setup_tracing
from tables.affinity import define_affinity
from tables.dedupe import define_dedupe
from tables.frame_counts import define_frame_counts
from tables.heartbeat_path import define_heartbeat_path
from tables.load import define_load
from tables.recovery import ResettingTableManager
from tables.registry import define_registry
from tables.waiting import define_waiting
from tables.worker_stats import define_worker_stats

log = logging.getLogger(__name__)


def faust_app(settings: Settings) -> faust.App:
    host = settings.web_advertised_host or socket.gethostname()
    app_class = app_with_fetch_wait(settings.consumer_fetch_max_wait_ms)
    return app_class(
        settings.app_id,
        # Faust would read its own variables (BROKER_URL, TOPIC_PARTITIONS, WEB_HOST, ...) over
        # these arguments: a stray BROKER_URL would silently beat KAFKA_BROKER. Ours are the only set.
        env={},
        Worker=worker_class(settings),
        broker=settings.kafka_broker,
        broker_credentials=faust_credentials(settings.kafka_security),
        store=settings.store,
        datadir=settings.data_dir,
        web_enabled=True,
        web_bind=settings.web_host,
        # Faust's `worker --web-port` rebuilds canonical_url from web_host: keep it the advertised host.
        web_host=host,
        web_port=settings.web_port,
        canonical_url=f"http://{host}:{settings.web_port}",
        topic_partitions=settings.captured_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        broker_rebalance_timeout=settings.broker_rebalance_timeout,
        broker_session_timeout=settings.broker_session_timeout,
        broker_heartbeat_interval=settings.broker_heartbeat_interval,
        # A new deployment must route frames captured before its first start.
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        processing_guarantee="at_least_once",
        stream_buffer_maxsize=4096,
        web_stats_enabled=False,
        # Tansu reports a changelog's end too low (ListOffsets), which this check takes for
        # lost data; the dev stack and the tests turn it off there.
        recovery_consistency_check=settings.recovery_consistency_check,
        # A checkpoint past its changelog's end restores the partition instead of crashing.
        TableManager=ResettingTableManager,
        web_graph_enabled=False,
    )


@dataclass
class WorkerApp:
    """Everything one worker runs; tests drive the agents through ``test_context()``."""

    # What it was built from; its pieces each hold their own typed config.
    settings: Settings
    orch: Orchestrator
    router: Router
    routing: FrameRouting
    route_frames: Any
    drain_waiting: Any

    @property
    def app(self) -> faust.App:
        return self.orch.app


def create_worker_app(settings: Settings, *, prometheus: bool = False, sender: RecordSender | None = None) -> WorkerApp:
    """``prometheus`` adds Faust's own Prometheus sensor (about 60 µs per record); our metrics are
    always there. ``sender`` replaces the router's producer (tests)."""
    app = faust_app(settings)
    topics = define_topics(app, settings)
    parts = settings.captured_partitions
    tables = Tables(
        registry=define_registry(app),
        load=define_load(app),
        affinity=define_affinity(app, parts),
        dedupe=define_dedupe(app, parts),
        waiting=define_waiting(app, parts),
        worker_stats=define_worker_stats(app),
        heartbeat_path=define_heartbeat_path(app),
        frame_counts=define_frame_counts(app, parts),
    )
    orch = Orchestrator(app=app, redis_connection=settings.redis, topics=topics, tables=tables)
    router = Router(
        default_capabilities=settings.default_capabilities,
        affinity_epsilon=settings.affinity_epsilon,
        protected_priority=settings.protected_priority,
        critical_utilisation=settings.bp_critical,
        stale_sample_seconds=STALE_AFTER_SAMPLE_INTERVALS * settings.lag_sample_interval,
    )
    routing = FrameRouting(
        orch,
        routing_config(settings),
        router,
        sender or _kafka_sender(settings),
        lambda: refresh_view(orch, router),
        # A routed record that Kafka refused for good must not be committed past: stop, and the
        # restarted worker routes again from the last commit. Crashing the app crashes the worker
        # running it, whichever command started that worker.
        on_fatal=lambda exc: _crash(app, exc),
    )

    @app.agent(topics.captured, name="route_frames")
    async def route_frames(stream: faust.StreamT[bytes]) -> None:
        await routing.sender.start()
        # Acked by routing once every record a frame led to is acknowledged, not by the stream.
        async for event in cast(Any, stream).noack().events():
            await routing.on_captured(event)

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def freeze_after_rebalance(_: object, **kwargs: object) -> None:
        # Sent just before the streams resume: tables and the dedupe index are loaded by now.
        freeze_long_lived("rebalance")

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def forget_revoked(_: object, revoked: set[Any], **kwargs: object) -> None:
        routing.forget(tp.partition for tp in revoked if tp.topic == settings.captured_topic)

    @app.agent(topics.waiting, name="drain_waiting")
    async def drain_waiting(stream: faust.StreamT[bytes]) -> None:
        async for event in cast(Any, stream).noack().events():
            await routing.on_waiting(event)

    register_folds(orch, registry_config(settings))
    register_count_results(orch)
    register_count_dead_letters(orch)
    register_stats_ledger(orch)
    register_worker_timers(orch, router)
    register_watch_health(orch, router, health_watch_config(settings))
    register_web(orch, WebConfig.from_settings(settings))
    probe = BrokerProbe(settings.bootstrap_servers, f"{settings.app_id}-ready", settings.kafka_security)
    register_health_views(orch, route_frames, routing.progress, settings.routing_stuck_seconds, probe)
    _register_dashboard(app)
    register_camera_grid(app, settings)
    export_build_info("worker")
    if settings.metrics_v1_aliases:
        register_v1_aliases()
    if prometheus:
        from faust.sensors.prometheus import setup_prometheus_sensors

        # Serves /metrics itself, from the same registry as ours.
        setup_prometheus_sensors(app, name_prefix="faust")
    else:
        _register_metrics_page(app)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def close_clients(_: object, **kwargs: object) -> None:
        await routing.sender.stop()
        await orch.close()

    return WorkerApp(settings, orch, router, routing, route_frames, drain_waiting)


def _kafka_sender(settings: Settings) -> KafkaSender:
    return KafkaSender(
        settings.bootstrap_servers,
        f"{settings.app_id}-router",
        settings.router_linger_ms,
        security=settings.kafka_security,
    )


def _register_metrics_page(app: faust.App) -> None:
    @app.page("/metrics")
    async def metrics(self: web.View, request: web.Request) -> web.Response:
        # CONTENT_TYPE_LATEST carries a charset, which aiohttp takes only as a plain header.
        body = generate_latest(REGISTRY)
        return cast(web.Response, Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST}))


def _register_dashboard(app: faust.App) -> None:
    from app.dashboard import register_dashboard

    register_dashboard(app)


# Held until done (the loop keeps only a weak reference to a task), and one per service: the
# failures of one batch of sends arrive together, and each crash() call logs the reason again.
_CRASHING: dict[mode.Service, asyncio.Future[None]] = {}


def _crash(service: mode.Service, exc: BaseException) -> None:
    if service.crashed or service in _CRASHING:
        return
    future = asyncio.ensure_future(service.crash(exc))
    _CRASHING[service] = future
    future.add_done_callback(lambda _: _CRASHING.pop(service, None))


def required_topics(settings: Settings) -> list[tuple[str, int]]:
    """Topics shared with other services, created up front with the partitions tables need.

    A broker that auto-creates topics would otherwise give the control topic its default
    partition count, and the registry GlobalTable refuses a source/changelog mismatch.
    """
    parts = settings.captured_partitions
    return [
        (settings.captured_topic, parts),
        (settings.dead_letter_topic, parts),
        (settings.results_topic, parts),
        (settings.control_topic, 1),
    ]


class GracefulWorker(faust.Worker):
    """The worker of our app, however started: gone within ``shutdown_grace`` seconds of SIGTERM/SIGINT,
    with the shared topics created and tracing set up before the app starts.

    Faust's own stop waits on the broker (commits, leaving the group, flushing), for ever
    when the broker is gone; mode dispatches both signals to these two handlers. The app's
    ``Worker`` setting is a subclass bound to its Settings (``worker_class``), which is how
    ``faust -A app.main worker`` gets here too.
    """

    settings: ClassVar[Settings]
    shutdown_grace = 8.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shutdown_grace = self.settings.shutdown_grace_seconds
        # At WARN and above Faust adds a terminal spinner that spins on every log record, and to feed
        # it lowers the root logger to DEBUG: every debug() call in Faust and aiokafka then builds a
        # record (several per frame), only for the spinner to drop it. We have no terminal to spin.
        self.spinner = None

    async def on_first_start(self) -> None:
        # Runs before the app, a dependency of the worker, starts; after Faust set up logging and
        # the signal handlers, so a SIGTERM while the broker is still unreachable is obeyed.
        await super().on_first_start()
        settings = self.settings
        setup_logging(settings.log_level)
        await ensure_topics(
            settings.bootstrap_servers,
            required_topics(settings),
            settings.topic_replication_factor,
            security=settings.kafka_security,
        )
        setup_tracing(settings.otel_service_name, settings.otel_exporter_otlp_endpoint, settings.otel_sampling_ratio)

    def _crash(self, reason: BaseException) -> None:
        # A crash stops the worker as a signal does, and its stop can wait on the broker as long.
        exit_after(self.shutdown_grace, "worker")
        super()._crash(reason)

    def _on_sigterm(self) -> None:
        exit_after(self.shutdown_grace, "worker")
        super()._on_sigterm()

    def _on_sigint(self) -> None:
        exit_after(self.shutdown_grace, "worker")
        super()._on_sigint()


def worker_class(settings: Settings) -> type[GracefulWorker]:
    """A GracefulWorker bound to ``settings``: what the app's ``Worker`` setting names."""

    class Worker(GracefulWorker):
        pass

    Worker.settings = settings
    return Worker


def run_worker(settings: Settings) -> None:
    """Run one Faust worker until SIGTERM/SIGINT; blocking."""
    setup_logging(settings.log_level)
    worker_app = create_worker_app(settings, prometheus=settings.faust_prometheus)
    worker = cast(type[GracefulWorker], worker_app.app.conf.Worker)(worker_app.app, loglevel=settings.log_level)
    worker.execute_from_commandline()


@functools.cache
def _app_from_environment() -> faust.App:
    settings = or_exit(load_settings)
    return create_worker_app(settings, prometheus=settings.faust_prometheus).app


if TYPE_CHECKING:
    app: faust.App
else:

    def __getattr__(name: str) -> Any:
        # Built on first access, not at import: importing this module (tests, the CLI, benchmarks)
        # must read no environment and declare no app.
        if name == "app":
            return _app_from_environment()
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    run_worker(or_exit(load_settings))
