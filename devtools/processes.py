"""Child processes: the one runner used by `dev`, the dev stack, the benchmarks and the tests.

Every child runs in a session of its own, so its whole process group can be signalled and
a Ctrl-C in the terminal reaches only the runner, which then stops the children in the
order it chooses. Its environment is built from one Settings object (``settings_env``),
exactly as the Procfile runs it, so a test that SIGKILLs a child kills the real thing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.settings import Settings


def settings_env(settings: Settings, base: Mapping[str, str] | None = None, **overrides: Any) -> dict[str, str]:
    """The environment a child needs to run with exactly these settings, ``overrides`` applied.

    ``base`` is the environment the settings are laid over (this process's by default);
    each field is its name upper-cased, and a field that is None is removed from it.
    """
    if overrides:
        settings = settings.model_copy(update=overrides)
    return settings.as_env(base)


def dies_with_parent(argv: list[str], signal_name: str = "KILL") -> list[str]:
    """``argv`` made to receive SIG``signal_name`` when the process (thread) that started it dies.

    A runner's stop() and atexit hooks cover every ordinary exit; this covers a pytest or
    `make dev` that is itself SIGKILLed, which would otherwise leave its children running.
    Uses setpriv (util-linux) where there is one; elsewhere children only stop on clean exits.
    """
    setpriv = shutil.which("setpriv")
    if setpriv is None or not sys.platform.startswith("linux"):
        return argv
    return [setpriv, "--pdeathsig", signal_name, "--", *argv]


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM of a live process in MiB; None when the process is gone or /proc is not there."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


@dataclass
class ChildProcess:
    """One child process in a session of its own, its output in ``log_path``.

    ``log_dir`` holds ``<name>.log`` unless ``log_path`` names another file; ``cwd`` is
    where it runs (this process's directory when None); ``pdeathsig`` names the signal it
    gets if the runner dies without stopping it (None: it outlives such a runner).
    """

    name: str
    argv: list[str]
    env: Mapping[str, str] | None
    log_dir: Path
    role: str = ""
    cwd: Path | None = None
    pdeathsig: str | None = None
    log_path: Path = Path()
    popen: subprocess.Popen[bytes] | None = None
    stopping: bool = False

    def __post_init__(self) -> None:
        if self.log_path == Path():
            self.log_path = self.log_dir / f"{self.name}.log"

    def start(self) -> ChildProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = self.argv if self.pdeathsig is None else dies_with_parent(self.argv, self.pdeathsig)
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                argv,
                env=None if self.env is None else dict(self.env),
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None, "start() first"
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        """None while running (or not started); polls, so a child that just died is seen."""
        return None if self.popen is None else self.popen.poll()

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def check_alive(self) -> None:
        """Raise, with the log's tail, if the child was started and has exited."""
        if self.popen is not None and self.popen.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}; log tail:\n{self.tail(30)}")

    def signal_group(self, signum: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signum)

    def terminate(self) -> None:
        """SIGTERM to the group: drain and stop. ``wait_stopped`` bounds how long that takes."""
        self.stopping = True
        self.signal_group(signal.SIGTERM)

    def kill(self, timeout: float = 10) -> None:
        """SIGKILL: no drain, no goodbye: what a crashed host looks like."""
        if self.alive():
            self.signal_group(signal.SIGKILL)
            assert self.popen is not None
            self.popen.wait(timeout)

    def freeze(self) -> None:
        """SIGSTOP: the process holds its sockets and state but answers nothing (a long GC pause,
        a throttled container, a laptop lid closed)."""
        self.signal_group(signal.SIGSTOP)

    def thaw(self) -> None:
        self.signal_group(signal.SIGCONT)

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM, then SIGKILL if still running after ``timeout``; the exit code."""
        if self.popen is None:
            return None
        if self.alive():
            self.thaw()  # a frozen process would not see the SIGTERM until the timeout
            self.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.popen.returncode

    def wait_stopped(self, grace: float, force: threading.Event) -> int | None:
        """Wait up to grace after terminate() (less once force is set), then SIGKILL the whole group."""
        if self.popen is None:
            return None
        deadline = time.monotonic() + grace
        while self.popen.poll() is None and time.monotonic() < deadline and not force.is_set():
            time.sleep(0.1)
        if self.popen.poll() is None:
            self.signal_group(signal.SIGKILL)
        code = self.popen.wait()
        # The group may hold grandchildren that outlived their parent.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        return code

    def peak_rss_mb(self) -> float | None:
        return peak_rss_mb(self.pid) if self.alive() else None

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
