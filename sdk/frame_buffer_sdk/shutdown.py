"""The bound on a service's shutdown: once asked to stop, a process is gone within its grace.

A clean stop flushes, commits and leaves groups, which all wait on the servers; with the
broker gone (or frozen) those waits outlast any orchestrator's patience, and a process that
ignores SIGTERM is SIGKILLed anyway, without a word in its log. Here the process says why
and exits itself. What it had not finished stays pending or uncommitted: at-least-once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator

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


@contextlib.contextmanager
def stop_on_signals(request_stop: Callable[[], None], service: str, grace: float) -> Iterator[None]:
    """Within the block, SIGTERM/SIGINT stop the service the one way every service stops.

    The first signal asks it to finish what it has in hand (``request_stop``) and arms the
    ``grace`` deadline; a second one cancels the running task without waiting. Outside the
    main thread (a test running the service beside others) no handler is installed.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    asked = False

    def on_signal(sig: signal.Signals) -> None:
        nonlocal asked
        if asked:
            log.warning("second %s: %s stops without finishing what it has in hand", sig.name, service)
            if task is not None:
                task.cancel()
            return
        asked = True
        log.info("%s: %s finishes what it has in hand, then stops", sig.name, service)
        exit_after(grace, service)
        request_stop()

    sigs = (signal.SIGTERM, signal.SIGINT)
    for sig in sigs:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        yield
    finally:
        for sig in sigs:
            loop.remove_signal_handler(sig)
