"""A detached dev stack: `frame-orchestrator stack up|down` (`make test-env-up|down`).

``DevStack`` stops its servers when its interpreter exits, so ``up`` cannot simply start
one and return. It starts a small supervisor process instead (``stack serve``) in a
session of its own; the supervisor holds the stack open until SIGTERM and writes the env
file only once both servers answer. The file is shell syntax, so it can be sourced, and
records the supervisor's pid, which is all ``down`` needs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from devtools.devstack import DevStack
from frame_buffer_sdk.errors import FrameBufferError

SUPERVISOR_PID = "FRAME_STACK_PID"
SERVER_PIDS = "FRAME_STACK_SERVER_PIDS"


class StackError(FrameBufferError, RuntimeError):
    """The stack could not be started or stopped; the message says why."""


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip().strip("'\"")
    return values


def alive(pid: int) -> bool:
    """True for a running process; a zombie (exited, not yet reaped) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    status = Path(f"/proc/{pid}/status")
    with contextlib.suppress(OSError):
        for line in status.read_text().splitlines():
            if line.startswith("State:"):
                return "Z" not in line.split()[1]
    return True


def _server_pids(stack: DevStack) -> list[int]:
    # The supervisor is the only owner of these pids; down uses them only if it died.
    return [s.proc.pid for s in stack._started if s.proc is not None and s.proc.popen is not None]


def serve(env_file: Path) -> None:
    """Run in the supervisor: start the stack, publish it in env_file, hold it until a signal."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda *_: stop.set())
    with DevStack() as stack:
        env = stack.env()
        lines = [f"{name}={value}" for name, value in env.items()]
        lines.append(f"{SUPERVISOR_PID}={os.getpid()}")
        lines.append(f"{SERVER_PIDS}={','.join(str(p) for p in _server_pids(stack))}")
        tmp = env_file.with_name(env_file.name + ".tmp")
        tmp.write_text(
            f"# written by `frame-orchestrator stack up`; kafka: {stack.kafka_kind}, redis: {stack.redis_kind}\n"
            + "\n".join(lines)
            + "\n"
        )
        # Atomic: `up` polls for this file and must never read half of it.
        tmp.replace(env_file)
        print(f"stack ready: {env}", flush=True)
        while not stop.wait(1.0):
            pass
        print("stopping stack", flush=True)


def up(env_file: Path, timeout: float = 120.0) -> dict[str, str]:
    """Start the supervisor detached and return KAFKA_BROKER/REDIS_URL once both answer."""
    if env_file.exists():
        values = read_env_file(env_file)
        pid = int(values.get(SUPERVISOR_PID, "0") or 0)
        if pid and alive(pid):
            return values
        env_file.unlink()  # left by a supervisor that is gone
    env_file.parent.mkdir(parents=True, exist_ok=True)
    log_path = env_file.with_name(env_file.name + ".log")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "stack", "serve", "--env-file", str(env_file)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if env_file.exists():
            values = read_env_file(env_file)
            if values.get(SUPERVISOR_PID) == str(proc.pid):
                return values
        if proc.poll() is not None:
            raise StackError(f"the stack exited with {proc.returncode} while starting; see {log_path}")
        time.sleep(0.1)
    _stop_pid(proc.pid, [], 10.0)
    raise StackError(f"the stack did not start within {timeout:.0f} s; see {log_path}")


def down(env_file: Path, timeout: float = 30.0) -> str:
    """Stop the processes recorded in env_file, then remove it."""
    if not env_file.exists():
        return f"no stack recorded in {env_file}; nothing to stop"
    values = read_env_file(env_file)
    try:
        pid = int(values[SUPERVISOR_PID])
        servers = [int(p) for p in values.get(SERVER_PIDS, "").split(",") if p]
    except (KeyError, ValueError):
        raise StackError(f"{env_file} names no {SUPERVISOR_PID}; was it written by `stack up`?") from None
    was_running = alive(pid)
    _stop_pid(pid, servers, timeout)
    env_file.unlink(missing_ok=True)
    return f"stack stopped (supervisor {pid})" if was_running else f"stack supervisor {pid} was not running"


def _stop_pid(pid: int, servers: list[int], timeout: float) -> None:
    """SIGTERM the supervisor so it stops its servers; SIGKILL whatever is left after timeout."""
    # Without its supervisor (killed with -9) nothing else would stop the servers: they
    # run in sessions of their own, so they are signalled directly.
    if alive(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    else:
        for server in servers:
            if alive(server):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(server, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in [pid, *servers]):
        time.sleep(0.1)
    for target in [pid, *servers]:
        if alive(target):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(target, signal.SIGKILL)
