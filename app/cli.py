"""`frame-orchestrator`: parses the command line and delegates; no logic of its own.

Settings are read here (and only here, for every service started from the command line)
with ``load_settings``, which names the variable when a value is bad. Service modules are
imported inside their command so ``--help`` and ``check-config`` start fast.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from core.settings import ConfigurationError, Settings, load_settings
from frame_buffer_sdk.redact import redact_text
from frame_buffer_sdk.settings import LOG_LEVELS

DEFAULT_STACK_FILE = ".devstack/stack.env"
# sample_processors.samples.SAMPLE_KINDS (a unit test holds them equal): importing it here would load OpenCV for --help.
SAMPLE_KINDS = ("brightness", "detector", "object_detection", "face_detection")


def _settings(**overrides: object) -> Settings:
    """The environment's settings; ``overrides`` (command-line options, None when not given) win."""
    try:
        return load_settings(**{name: value for name, value in overrides.items() if value is not None})
    except ConfigurationError as exc:
        click.echo(str(exc), err=True)
        raise SystemExit(2) from None


_SECRET_NAMES = ("password", "secret", "token", "key")


def _redact(name: str, value: object) -> str:
    """Passwords in URLs and secret-looking fields never reach a terminal or a CI log."""
    if value is None:
        return ""
    text = ",".join(value) if isinstance(value, list) else str(value)
    if any(word in name for word in _SECRET_NAMES):
        return "***" if text else ""
    return redact_text(text)


def _csv(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [item.strip() for item in value.split(",") if item.strip()]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="frame-buffer-v2")
def main() -> None:
    """Frame Buffer v2: route captured video frames to processors by capability and load.

    Every service reads its configuration from environment variables (see README).
    """


@main.command()
# Faust's own worker flags, so `faust -A app.main worker` habits carry over; each is one of our settings.
@click.option(
    "-l",
    "--loglevel",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default=None,
    help="Overrides LOG_LEVEL.",
)
@click.option("-p", "--web-port", type=click.IntRange(1, 65535), default=None, help="Overrides WEB_PORT.")
@click.option("-D", "--datadir", type=click.Path(file_okay=False), default=None, help="Overrides DATA_DIR.")
def worker(loglevel: str | None, web_port: int | None, datadir: str | None) -> None:
    """Run one orchestrator worker (Faust).

    Routing agents, tables, the REST API, the dashboard and /metrics on WEB_PORT.
    """
    settings = _settings(log_level=loglevel, web_port=web_port, data_dir=datadir)
    from app.main import run_worker

    run_worker(settings)


@main.command()
def bridge() -> None:
    """Mirror the capture stream into Kafka.

    Reads CAPTURE_STREAM as group CAPTURE_GROUP, writes CAPTURED_TOPIC; SIGTERM finishes the batch in flight.
    """
    settings = _settings()
    from app.configs import bridge_config, process_config
    from bridge.service import run_bridge

    run_bridge(bridge_config(settings), process_config(settings, "bridge", settings.bridge_metrics_port))


@main.command()
def relay() -> None:
    """Deliver routed frames to processors that read Redis streams (detektr's ProcessorClient).

    For each processor registered with a `queue`, mirrors its topic into that stream; SIGTERM finishes the batches.
    """
    settings = _settings()
    from app.configs import process_config, relay_config
    from relay.service import run_relay

    run_relay(relay_config(settings), process_config(settings, "relay", settings.relay_metrics_port))


_SYNTHETIC_ONLY = ("cameras", "width", "height", "malformed_ratio", "seed")


@main.command()
@click.option(
    "--source",
    "sources",
    multiple=True,
    metavar="[ID=]URL",
    help="A real camera: rtsp(s)://, http(s)://, tcp://, udp://, a video file or /dev/videoN. Repeatable.",
)
@click.option(
    "--sources-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="YAML or JSON list of cameras: {camera_id, url, fps, loop, capabilities, priority, options}.",
)
@click.option("--loop", is_flag=True, help="Start file sources over at their end.")
@click.option(
    "--format",
    "pixel_format",
    type=click.Choice(["bgr24", "jpeg"]),
    default="bgr24",
    show_default=True,
    help="How real cameras' pixels are stored.",
)
@click.option("--jpeg-quality", type=click.IntRange(1, 100), default=90, show_default=True)
@click.option("--cameras", type=click.IntRange(1, 10_000), default=8, show_default=True, help="Synthetic cameras.")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=5.0, show_default=True, help="Per camera.")
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Seconds (default: run forever, or until every file source ended).",
)
@click.option("--width", type=click.IntRange(1, 100_000), default=320, show_default=True)
@click.option("--height", type=click.IntRange(1, 100_000), default=240, show_default=True)
@click.option("--capabilities", default=None, help="Comma-separated capabilities each frame asks for.")
@click.option("--priority", type=click.IntRange(0, 10), default=None, help="Priority of every frame (0-10).")
@click.option(
    "--malformed-ratio",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Fraction of deliberately bad entries, to exercise dead-lettering.",
)
@click.option("--seed", type=int, default=None, help="Random seed, for repeatable runs.")
@click.pass_context
def capture(
    ctx: click.Context,
    sources: tuple[str, ...],
    sources_file: Path | None,
    loop: bool,
    pixel_format: str,
    jpeg_quality: int,
    cameras: int,
    fps: float,
    duration: float | None,
    width: int,
    height: int,
    capabilities: str | None,
    priority: int | None,
    malformed_ratio: float,
    seed: int | None,
) -> None:
    """Write frames of real cameras (--source, --sources-file) or synthetic ones to the capture stream.

    Pixels go to Redis with a TTL (frame:{frame_id} for real cameras), metadata to CAPTURE_STREAM,
    as detektr's rtsp-capture writes them. Without a source, synthetic cameras.
    """
    if sources or sources_file:
        given = [
            f"--{name.replace('_', '-')}"
            for name in _SYNTHETIC_ONLY
            if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE
        ]
        if given:
            raise click.UsageError(f"{', '.join(given)}: only for synthetic cameras, not with --source")
        _capture_cameras(sources, sources_file, loop, pixel_format, jpeg_quality, fps, duration, capabilities, priority)
        return
    settings = _settings()
    from devtools.synthetic_capture import run_capture

    run_capture(
        settings,
        cameras=cameras,
        fps=fps,
        duration=duration,
        width=width,
        height=height,
        capabilities=_csv(capabilities),
        priority=priority,
        malformed_ratio=malformed_ratio,
        seed=seed,
    )


def _capture_cameras(
    sources: tuple[str, ...],
    sources_file: Path | None,
    loop: bool,
    pixel_format: str,
    jpeg_quality: int,
    fps: float,
    duration: float | None,
    capabilities: str | None,
    priority: int | None,
) -> None:
    from app.configs import capture_config, process_config
    from capture.service import run_video_capture
    from capture.sources import SourceError, check_unique, load_sources, parse_source

    caps = tuple(_csv(capabilities) or ())
    try:
        cameras = [
            parse_source(text, n, fps, loop=loop, capabilities=caps, priority=priority)
            for n, text in enumerate(sources)
        ]
        if sources_file is not None:
            cameras += load_sources(sources_file, fps, loop=loop, capabilities=caps, priority=priority)
        check_unique(cameras)
    except SourceError as exc:
        raise click.BadParameter(str(exc)) from None
    settings = _settings()
    config, process = capture_config(settings), process_config(settings, "capture", settings.capture_metrics_port)
    run_video_capture(config, process, cameras, fmt=pixel_format, jpeg_quality=jpeg_quality, duration=duration)


@main.command()
@click.argument("kind", type=click.Choice(SAMPLE_KINDS))
@click.option("--id", "processor_id", default=None, help="Processor id (default: derived from KIND).")
@click.option("--capabilities", default=None, help="Comma-separated capabilities (default: the sample's).")
@click.option("--capacity", type=click.IntRange(1, 10_000_000), default=None, help="Frames of lag it can hold.")
@click.option(
    "--latency-ms", type=click.FloatRange(min=0), default=None, help="Simulated work per frame (detector only)."
)
@click.option("--concurrency", type=click.IntRange(1, 1024), default=None, help="Frames processed at once.")
def processor(
    kind: str,
    processor_id: str | None,
    capabilities: str | None,
    capacity: int | None,
    latency_ms: float | None,
    concurrency: int | None,
) -> None:
    """Run a sample processor built on the SDK.

    Registers at ORCHESTRATOR_URL, consumes its topic, publishes results; SIGTERM drains and deregisters.
    """
    settings = _settings()
    from sample_processors.samples import run_sample

    run_sample(
        settings,
        kind=kind,
        processor_id=processor_id,
        capabilities=_csv(capabilities),
        capacity=capacity,
        latency_ms=latency_ms,
        concurrency=concurrency,
    )


@main.command()
@click.option("--cameras", type=click.IntRange(1, 10_000), default=8, show_default=True, help="Synthetic cameras.")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=5.0, show_default=True, help="Per camera.")
@click.option(
    "--processors",
    default="brightness,detector",
    show_default=True,
    help="Sample processors to run, comma-separated.",
)
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True, help="Orchestrator workers.")
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Seconds to run once the pipeline is up (default: until Ctrl-C).",
)
@click.option("--web-port", type=click.IntRange(1, 65535), default=6066, show_default=True, help="First worker's port.")
@click.option(
    "--log-dir", type=click.Path(file_okay=False, path_type=Path), default=None, help="Default: a new temp dir."
)
@click.option(
    "--demo-video/--no-demo-video",
    default=True,
    show_default=True,
    help="Also play a generated clip through the real people detector (camera demo-video).",
)
def dev(
    cameras: int,
    fps: float,
    processors: str,
    workers: int,
    duration: float | None,
    web_port: int,
    log_dir: Path | None,
    demo_video: bool,
) -> None:
    """Run the whole pipeline locally, with live progress.

    Kafka and Redis (KAFKA_BROKER/REDIS_URL when set, else embedded), workers, the bridge, the
    sample processors and a synthetic capture, each a process of its own logging to --log-dir.
    Ctrl-C stops them in order.
    """
    settings = _settings()
    from devtools.dev import DevOptions, run_dev

    kinds = _csv(processors) or []
    unknown = sorted(set(kinds) - set(SAMPLE_KINDS))
    if unknown:
        raise click.BadParameter(f"unknown processor kind(s) {unknown}; choose from {', '.join(SAMPLE_KINDS)}")
    options = DevOptions(
        cameras=cameras,
        fps=fps,
        processors=tuple(kinds),
        workers=workers,
        duration=duration,
        web_port=web_port,
        log_dir=log_dir,
        demo_video=demo_video,
    )
    sys.exit(run_dev(settings, options))


@main.command()
@click.option("--from-v1", "from_v1", is_flag=True, required=True, help="Migrate frame-buffer v1's Redis state.")
@click.option("--dry-run", is_flag=True, help="Print what would be done; change nothing.")
@click.option("--v1-group", default="frame-buffer-group", show_default=True, help="v1's group on CAPTURE_STREAM.")
@click.option("--v1-queue", default="frame_queue", show_default=True, help="v1's stream of frames never dequeued.")
@click.option("--v1-dlq", default="frame_dlq", show_default=True, help="v1's dead-letter stream.")
@click.option("--v1-registry", default="processors:registry", show_default=True, help="v1's processor hash.")
def migrate(from_v1: bool, dry_run: bool, v1_group: str, v1_queue: str, v1_dlq: str, v1_registry: str) -> None:
    """Take over from frame-buffer v1 (stop v1 first; run before the first bridge).

    Positions CAPTURE_GROUP so every entry v1 never acknowledged is mirrored once, replays
    v1's queue into CAPTURE_STREAM, converts its dead letters to DEAD_LETTER_TOPIC and
    registers its processors. A second run does nothing.
    """
    import asyncio

    from app.configs import migrate_config
    from migrate.command import migrate_from_v1
    from migrate.v1 import V1Names

    settings = _settings()
    names = V1Names(group=v1_group, queue=v1_queue, dlq=v1_dlq, registry=v1_registry)
    click.echo(asyncio.run(migrate_from_v1(migrate_config(settings), names, dry_run=dry_run)))


def _api_target(settings: Settings, url: str | None, token: str | None) -> tuple[str, str | None]:
    """The worker to ask (--url, else ORCHESTRATOR_URL when set, else this host's WEB_PORT) and its token."""
    if url is None:
        given = "orchestrator_url" in settings.model_fields_set
        url = settings.orchestrator_url if given else f"http://127.0.0.1:{settings.web_port}"
    if token is None:
        secret = settings.admin_token or settings.api_token or settings.orchestrator_token
        token = secret.get_secret_value() if secret is not None else None
    return url.rstrip("/"), token


@main.command()
@click.option("--url", default=None, help="A worker's base URL (default: ORCHESTRATOR_URL, else localhost:WEB_PORT).")
@click.option("--token", default=None, help="Bearer token (default: ADMIN_TOKEN, API_TOKEN or ORCHESTRATOR_TOKEN).")
@click.option("--json", "as_json", is_flag=True, help="The same data as JSON, for scripts.")
@click.option("--no-redis", is_flag=True, help="Never read the bridge backlog from Redis (only from live bridges).")
def status(url: str | None, token: str | None, as_json: bool, no_redis: bool) -> None:
    """Workers, processors, levels, lag per partition, health and the bridge backlog.

    Asks one worker's REST API, like `kafka-consumer-groups --describe` for this system.
    Exit 1 when the worker cannot be asked.
    """
    import asyncio
    import json

    from app.status import StatusError, StreamSource, Target, collect, renderables

    settings = _settings()
    base, bearer = _api_target(settings, url, token)
    stream = None if no_redis else StreamSource(settings.redis, settings.capture_stream, settings.capture_group)
    try:
        report = asyncio.run(collect(Target(base, bearer, settings.captured_topic), stream))
    except StatusError as exc:
        click.echo(f"status: {exc}", err=True)
        raise SystemExit(1) from None
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        from rich.console import Console

        Console().print(renderables(report))


@main.group("dead-letters")
def dead_letters() -> None:
    """List DEAD_LETTER_TOPIC, or replay chosen dead letters through routing (each once)."""


def _letter_filters(f: click.decorators.FC) -> click.decorators.FC:
    for decorator in reversed(
        (
            click.option("--reason", "reasons", multiple=True, help="Only this reason. Repeatable."),
            click.option("--camera", "cameras", multiple=True, help="Only this camera id. Repeatable."),
            click.option("--since", default=None, help="From this time: ISO 8601, or ago like 30s, 10m, 2h, 1d."),
            click.option("--until", default=None, help="Up to this time: ISO 8601, or ago like 10m."),
            click.option("--id", "ids", multiple=True, metavar="PARTITION:OFFSET", help="Only this one. Repeatable."),
            click.option("--json", "as_json", is_flag=True, help="JSON for scripts."),
        )
    ):
        f = decorator(f)
    return f


def _letter_filter(
    reasons: tuple[str, ...], cameras: tuple[str, ...], since: str | None, until: str | None, ids: tuple[str, ...]
) -> object:
    from app.dead_letters import DeadLetterError, LetterFilter, parse_time

    try:
        return LetterFilter(
            reasons=frozenset(reasons),
            cameras=frozenset(cameras),
            ids=frozenset(ids),
            since=parse_time(since) if since else None,
            until=parse_time(until) if until else None,
        )
    except DeadLetterError as exc:
        raise click.BadParameter(str(exc)) from None


@dead_letters.command("list")
@_letter_filters
def dead_letters_list(
    reasons: tuple[str, ...],
    cameras: tuple[str, ...],
    since: str | None,
    until: str | None,
    ids: tuple[str, ...],
    as_json: bool,
) -> None:
    """The dead letters that match every filter given, as a table (or --json)."""
    import asyncio
    import json

    from app.dead_letters import DeadLetterError, LetterFilter, letters_table, list_letters

    settings = _settings()
    chosen = _letter_filter(reasons, cameras, since, until, ids)
    assert isinstance(chosen, LetterFilter)
    try:
        letters = asyncio.run(list_letters(settings, chosen))
    except DeadLetterError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps([s.as_json() for s in letters], indent=2))
    else:
        click.echo(letters_table(letters), nl=False)


@dead_letters.command("replay")
@_letter_filters
@click.option("--all", "everything", is_flag=True, help="Every dead letter (needed when no filter is given).")
@click.option("--dry-run", is_flag=True, help="Say what would be replayed; send nothing.")
@click.option("--no-pixel-check", is_flag=True, help="Replay frames even when their pixels have left Redis.")
def dead_letters_replay(
    reasons: tuple[str, ...],
    cameras: tuple[str, ...],
    since: str | None,
    until: str | None,
    ids: tuple[str, ...],
    as_json: bool,
    everything: bool,
    dry_run: bool,
    no_pixel_check: bool,
) -> None:
    """Send the chosen dead letters' frames back to CAPTURED_TOPIC for routing, each once.

    Replayed letters are marked on DEAD_LETTER_TOPIC.replayed and skipped by later runs;
    letters without a whole frame are reported as not replayable, with why.
    """
    import asyncio
    import json

    from app.dead_letters import DeadLetterError, LetterFilter, outcome_text, replay

    settings = _settings()
    chosen = _letter_filter(reasons, cameras, since, until, ids)
    assert isinstance(chosen, LetterFilter)
    if chosen.empty and not everything:
        raise click.UsageError("choose dead letters with --reason/--camera/--since/--until/--id, or pass --all")
    try:
        outcome = asyncio.run(replay(settings, chosen, dry_run=dry_run, check_pixels=not no_pixel_check))
    except DeadLetterError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(outcome.as_json(), indent=2) if as_json else outcome_text(outcome, dry_run))


@main.command("check-config")
def check_config() -> None:
    """Print the configuration; exit 2 if invalid.

    One NAME=value line per setting, passwords redacted; a bad value is named on stderr.
    """
    settings = _settings()
    for name, value in settings.model_dump().items():
        click.echo(f"{name.upper()}={_redact(name, value)}")


@main.group()
def stack() -> None:
    """A detached Kafka + Redis for local work.

    What `make test-env-up` and `make test-env-down` run.
    """


_ENV_FILE = click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_STACK_FILE,
    show_default=True,
    help="Where KAFKA_BROKER/REDIS_URL and the supervisor pid are written.",
)


@stack.command("up")
@_ENV_FILE
@click.option("--timeout", type=click.FloatRange(min=1), default=120, show_default=True, help="Seconds to wait.")
def stack_up(env_file: Path, timeout: float) -> None:
    """Start Kafka + Redis in the background (KAFKA_BROKER/REDIS_URL in the env are used as given)."""
    from devtools.devstack_daemon import StackError, up

    try:
        values = up(env_file, timeout=timeout)
    except StackError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"stack up: KAFKA_BROKER={values['KAFKA_BROKER']} REDIS_URL={values['REDIS_URL']} -> {env_file}")


@stack.command("down")
@_ENV_FILE
@click.option("--timeout", type=click.FloatRange(min=1), default=30, show_default=True, help="Seconds to wait.")
def stack_down(env_file: Path, timeout: float) -> None:
    """Stop the stack `stack up` started with this env file, and remove the file."""
    from devtools.devstack_daemon import StackError, down

    try:
        message = down(env_file, timeout=timeout)
    except StackError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(message)


@stack.command("serve", hidden=True)
@_ENV_FILE
def stack_serve(env_file: Path) -> None:
    """The detached supervisor `stack up` starts: holds the stack open until SIGTERM."""
    from devtools.devstack_daemon import serve

    serve(env_file)


if __name__ == "__main__":
    main()
