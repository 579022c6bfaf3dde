"""`frame-orchestrator dev` / `make dev`: the whole pipeline on one machine, with live progress.

Starts Kafka and Redis (``DevStack``: KAFKA_BROKER/REDIS_URL when set, else embedded
servers), then each service as a subprocess of its own with an environment built from one
Settings object: workers, the bridge, the sample processors and the synthetic capture.
Every child runs in a session of its own so Ctrl-C reaches only this runner, which then
stops them in dependency order (capture, bridge, processors, workers, stack); each gets
SIGTERM to drain and SIGKILL only if it outstays its grace period.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import signal
import socket
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from capture.demo import write_demo_video
from core.settings import Settings
from devtools.devstack import DevStack, DevStackError, free_port
from devtools.processes import ChildProcess, settings_env
from devtools.progress import ChildStatus, Poll, ProgressView
from frame_buffer_sdk.errors import FrameBufferError

# Which capability each sample processor serves; capture asks for these so frames reach them.
SAMPLE_CAPABILITIES = {
    "brightness": "brightness",
    "detector": "object_detection",
    "object_detection": "object_detection",
    "face_detection": "face_detection",
}

WORKER_READY_TIMEOUT = 120.0
REGISTER_TIMEOUT = 60.0
STOP_GRACE = {"capture": 10.0, "bridge": 20.0, "processor": 20.0, "worker": 30.0}
DEMO_CAMERA = "demo-video"
DEMO_CAPABILITY = "people_detection"
DEMO_PROCESSOR = "dev-people"
DEMO_FPS = 5.0


@dataclass(frozen=True)
class DevOptions:
    cameras: int = 8
    fps: float = 5.0
    processors: tuple[str, ...] = ("brightness", "detector")
    workers: int = 1
    duration: float | None = None
    web_port: int = 6066
    log_dir: Path | None = None
    # One more camera that plays a generated clip of a walking figure through the real people
    # detector, on a capability of its own so the synthetic cameras never load that model.
    demo_video: bool = True


class DevError(FrameBufferError, RuntimeError):
    """The pipeline could not be brought up; the message says which part and where its log is."""


def dev_settings(base: Settings, kafka_url: str, redis_url: str, data_dir: Path) -> Settings:
    """The user's settings on the dev stack, with group timeouts short enough for a quick start."""
    values = base.model_dump()
    values.update(
        kafka_broker=kafka_url,
        redis_url=redis_url,
        store="memory://",
        data_dir=str(data_dir),
        broker_rebalance_timeout=2.0,
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        recovery_consistency_check=False,
        web_host="127.0.0.1",
        web_advertised_host="127.0.0.1",
    )
    if base.api_token is None:
        # One token per dev run, shared by its workers and processors: nothing else may write.
        token = secrets.token_urlsafe(24)
        values.update(api_token=token, orchestrator_token=token)
    return Settings(**values)


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def child_status(child: ChildProcess) -> ChildStatus:
    """One child as the progress view shows it."""
    code = child.returncode
    if child.popen is None:
        state = "not started"
    elif code is None:
        state = "stopping" if child.stopping else "running"
    else:
        state = f"exited {code}"
    return ChildStatus(child.name, child.popen.pid if child.popen is not None else None, state, child.log_path)


def get_json(url: str, timeout: float = 1.0, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as response:
        return json.loads(response.read())


def health_ready(base_url: str) -> bool:
    try:
        get_json(f"{base_url}/health", timeout=2.0)
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return True


class Signals:
    """First SIGINT/SIGTERM asks for a clean stop; a second one cuts grace periods short."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.force = threading.Event()
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.stop.is_set():
            self.force.set()
        self.stop.set()

    @contextlib.contextmanager
    def installed(self) -> Iterator[Signals]:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._previous[signum] = signal.signal(signum, self._handle)
        try:
            yield self
        finally:
            for number, handler in self._previous.items():
                signal.signal(number, handler)


@dataclass
class DevRun:
    settings: Settings
    options: DevOptions
    log_dir: Path
    view: ProgressView
    signals: Signals
    children: list[ChildProcess] = field(default_factory=list)
    crashed: list[str] = field(default_factory=list)
    # Chosen up front so the view can show every /metrics URL before the services start.
    bridge_metrics_port: int = field(default_factory=free_port)
    processor_ports: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.processor_ports = {kind: free_port() for kind in self.options.processors}

    @property
    def read_token(self) -> str | None:
        """What the progress view sends when the workers' reads need API_TOKEN too."""
        token = self.settings.api_token
        return token.get_secret_value() if token is not None and self.settings.api_read_auth else None

    def urls(self) -> list[tuple[str, str]]:
        base = self.base_url
        urls = [
            ("dashboard", f"{base}/"),
            ("cameras", f"{base}/cameras"),
            ("REST API", f"{base}/api/v1/processors/"),
            ("metrics", f"{base}/metrics"),
            ("bridge", f"http://127.0.0.1:{self.bridge_metrics_port}/metrics"),
        ]
        urls += [(f"worker-{i}", f"http://127.0.0.1:{port}/") for i, port in enumerate(self.worker_ports) if i]
        urls += [(kind, f"http://127.0.0.1:{port}/metrics") for kind, port in self.processor_ports.items()]
        return urls

    @property
    def worker_ports(self) -> list[int]:
        return [self.options.web_port + i for i in range(self.options.workers)]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.options.web_port}"

    def _child(self, name: str, role: str, args: list[str], **overrides: Any) -> ChildProcess:
        argv = [sys.executable, "-m", "app.cli", *args]
        # A dev that dies any way at all (the terminal closed, SIGKILL) takes its services
        # with it; TERM lets them stop cleanly, and each is gone within its own grace.
        child = ChildProcess(
            name, argv, settings_env(self.settings, **overrides), self.log_dir, role=role, pdeathsig="TERM"
        )
        self.children.append(child)
        child.start()
        self.view.note(f"started {name} (pid {child.pid}), log {child.log_path}")
        return child

    def _wait(self, what: str, done: Callable[[], bool], timeout: float, watch: list[ChildProcess]) -> bool:
        """Wait for done(); False on Ctrl-C. A watched child exiting is an error naming its log."""
        deadline = time.monotonic() + timeout
        while not done():
            for child in watch:
                if child.returncode is not None:
                    raise DevError(f"{child.name} exited with {child.returncode} while {what}:\n{child.tail(15)}")
            if time.monotonic() > deadline:
                raise DevError(f"timed out after {timeout:.0f} s {what}; logs in {self.log_dir}")
            if self.signals.stop.wait(0.25):
                return False
        return True

    def start(self) -> bool:
        """Bring the pipeline up; False when interrupted on the way."""
        if self.signals.stop.is_set():  # Ctrl-C while the stack was starting
            return False
        opts = self.options
        workers = []
        for i in range(opts.workers):
            # Faust creates only the last level of its data dir; each worker has its own.
            data_dir = Path(self.settings.data_dir) / f"worker-{i}"
            data_dir.mkdir(parents=True, exist_ok=True)
            workers.append(
                self._child(f"worker-{i}", "worker", ["worker"], web_port=opts.web_port + i, data_dir=str(data_dir))
            )
        bridge = self._child("bridge", "bridge", ["bridge"], bridge_metrics_port=self.bridge_metrics_port)
        self.view.note(f"waiting for worker-0 to join its group ({self.base_url}/health)")
        if not self._wait("waiting for worker-0", lambda: health_ready(self.base_url), WORKER_READY_TIMEOUT, workers):
            return False
        ids = []
        if opts.demo_video:
            ids.append(DEMO_PROCESSOR)
            self._child(
                DEMO_PROCESSOR,
                "processor",
                ["processor", "object_detection", "--id", DEMO_PROCESSOR, "--capabilities", DEMO_CAPABILITY],
                orchestrator_url=self.base_url,
                processor_metrics_port=free_port(),
            )
        for kind in opts.processors:
            pid = f"dev-{kind}"
            ids.append(pid)
            self._child(
                pid,
                "processor",
                ["processor", kind, "--id", pid],
                orchestrator_url=self.base_url,
                processor_metrics_port=self.processor_ports[kind],
            )
        processors = [c for c in self.children if c.role == "processor"]
        if ids:
            self.view.note(f"waiting for processors {', '.join(ids)} to register")
        if ids and not self._wait(
            "waiting for processors to register",
            lambda: self._registered(ids),
            REGISTER_TIMEOUT,
            [*workers, bridge, *processors],
        ):
            return False
        capabilities = ",".join(dict.fromkeys(SAMPLE_CAPABILITIES[k] for k in opts.processors))
        args = ["capture", "--cameras", str(opts.cameras), "--fps", str(opts.fps)]
        if capabilities:
            args += ["--capabilities", capabilities]
        self._child("capture", "capture", args)
        if opts.demo_video:
            clip = write_demo_video(self.log_dir / "demo.mp4")
            source = f"{DEMO_CAMERA}={clip}"
            video_args = ["capture", "--source", source, "--loop", "--fps", str(DEMO_FPS)]
            self._child(
                "capture-video",
                "capture",
                [*video_args, "--capabilities", DEMO_CAPABILITY],
                capture_metrics_port=free_port(),
            )
        return True

    def _registered(self, ids: list[str]) -> bool:
        try:
            listed = get_json(f"{self.base_url}/api/v1/processors/", token=self.read_token)
        except (urllib.error.URLError, OSError, ValueError):
            return False
        return set(ids) <= {p.get("id") for p in listed if isinstance(p, dict)}

    def poll(self) -> Poll:
        errors = []
        for i in range(self.options.workers):
            url = f"http://127.0.0.1:{self.options.web_port + i}/api/v1"
            try:
                token = self.read_token
                return Poll(get_json(f"{url}/frames/stats", token=token), get_json(f"{url}/backpressure", token=token))
            except (urllib.error.URLError, OSError, ValueError) as exc:
                errors.append(f"worker-{i}: {exc}")
        return Poll(error="; ".join(errors))

    def watch(self) -> None:
        """Refresh the view about once a second until the duration is over or a signal arrives."""
        started = time.monotonic()
        while True:
            now = time.monotonic()
            elapsed = now - started
            self.view.update(now, elapsed, self.poll(), [child_status(c) for c in self.children])
            for child in self.children:
                if child.returncode is not None and child.name not in self.crashed:
                    self.crashed.append(child.name)
                    self.view.note(f"{child.name} exited with {child.returncode}; log {child.log_path}")
            if self.options.duration is not None and elapsed >= self.options.duration:
                return
            if self.signals.stop.wait(max(0.0, 1.0 - (time.monotonic() - now))):
                return

    def stop(self) -> int:
        """Stop in dependency order; the exit code is 1 if anything crashed or had to be killed."""
        self.view.freeze()
        # Nothing was asked to stop yet: whatever has exited, exited on its own.
        failed = [f"{c.name} ({c.returncode})" for c in self.children if c.returncode is not None]
        for role in ("capture", "bridge", "processor", "worker"):
            if role == "worker":
                # Totals with what the processors finished while draining, while a worker still answers.
                final = self.poll()
                if final.stats is not None:
                    self.view.last_stats = final.stats
            group = [c for c in self.children if c.role == role and c.returncode is None]
            if not group:
                continue
            self.view.note(f"stopping {', '.join(c.name for c in group)}")
            # Same role, no dependency between them: signal all, then wait for each.
            for child in group:
                child.terminate()
            for child in group:
                code = child.wait_stopped(STOP_GRACE[role], self.signals.force)
                # -SIGTERM: it was still starting, before its own handler was in place.
                if code not in (0, None, -signal.SIGTERM):
                    failed.append(f"{child.name} ({code})")
        if failed:
            self.view.note(f"not clean: {', '.join(failed)}; logs in {self.log_dir}")
        return 1 if failed else 0


def _shown(url: str | None) -> str | None:
    """A URL without its user:password part, for the terminal."""
    return re.sub(r"//[^@/]*@", "//", url) if url else None


def run_dev(settings: Settings, options: DevOptions, out: TextIO | None = None) -> int:
    """Run the pipeline until options.duration passes (counted once frames flow) or SIGINT/SIGTERM."""
    out = out or sys.stdout
    busy = [p for p in range(options.web_port, options.web_port + options.workers) if not port_free(p)]
    if busy:
        print(f"port(s) {busy} already in use: pass --web-port", file=sys.stderr)
        return 2
    log_dir = options.log_dir or Path(tempfile.mkdtemp(prefix="frame-dev-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    view = ProgressView([], log_dir, out, live=out.isatty())
    kafka = settings.kafka_broker if "kafka_broker" in settings.model_fields_set else None
    redis = settings.redis_url if "redis_url" in settings.model_fields_set else None
    signals = Signals()
    with signals.installed():
        view.note(f"logs: {log_dir}")
        view.note(f"Kafka: {_shown(kafka) or 'starting one'}, Redis: {_shown(redis) or 'starting one'}")
        try:
            stack = DevStack(kafka_url=kafka, redis_url=redis, use_env=False).start()
        except DevStackError as exc:
            print(f"dev stack: {exc}", file=sys.stderr)
            return 1
        try:
            assert stack.kafka_url and stack.redis_url
            child_settings = dev_settings(settings, stack.kafka_url, stack.redis_url, log_dir / "data")
            if settings.api_token is None and child_settings.api_token is not None:
                # Made for this run only; the user needs it to call the REST API (curl, own processors).
                view.note(f"API_TOKEN of this run: {child_settings.api_token.get_secret_value()}")
            run = DevRun(child_settings, options, log_dir, view, signals)
            view.urls = run.urls()
            code = 0
            try:
                if run.start():
                    for label, url in view.urls:
                        view.note(f"{label}: {url}")
                    run.watch()
            except DevError as exc:
                view.note(f"error: {exc}")
                code = 1
            finally:
                code = max(code, run.stop())
                view.close()
        finally:
            if stack.kafka_kind != "given" or stack.redis_kind != "given":
                view.note("stopping Kafka and Redis")
            stack.stop()
    return code
