"""The bound on a service's shutdown: once asked to stop, a process is gone within its grace.

A clean stop flushes, commits and leaves groups, which all wait on the servers; with the
broker gone (or frozen) those waits outlast any orchestrator's patience, and a process that
ignores SIGTERM is SIGKILLed anyway, without a word in its log. Here the process says why
and exits itself. What it had not finished stays pending or uncommitted: at-least-once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading

log = logging.getLogger(__name__)

# Not 0: whoever waits for the exit must see that the clean stop did not complete.
EXIT_GRACE_EXPIRED = 70

_armed: threading.Timer | None = None
_lock = threading.Lock()


def _expire(service: str, grace: float) -> None:
    log.error("%s did not stop within %.1f s of being asked (SHUTDOWN_GRACE_SECONDS); exiting now", service, grace)
    for handler in logging.getLogger().handlers:
        # A broken log stream must not keep the process alive.
        with contextlib.suppress(Exception):
            handler.flush()
    os._exit(EXIT_GRACE_EXPIRED)


def exit_after(grace: float, service: str) -> None:
    """Arm, once per process, a timer that ends the process ``grace`` seconds from now.

    Safe from signal handlers; later calls (a second SIGTERM) keep the first deadline. The
    timer thread is a daemon: a process that finishes its clean stop in time exits normally.
    """
    global _armed
    with _lock:
        if _armed is not None:
            return
        _armed = threading.Timer(grace, _expire, args=(service, grace))
        _armed.daemon = True
        _armed.start()
