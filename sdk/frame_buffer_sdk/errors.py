"""The exceptions of Frame Buffer v2, SDK and orchestrator alike, under one root.

``except FrameBufferError`` catches anything this project raises on purpose; each exception
also keeps the builtin base that says what kind of failure it is (ValueError, LookupError, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class FrameBufferError(Exception):
    """The root of every exception Frame Buffer v2 raises on purpose."""


class ConfigurationError(FrameBufferError, ValueError):
    """The environment holds a bad value; the message names each variable and why."""


def or_exit(load: Callable[[], T]) -> T:
    """At an entrypoint: ``load()`` (typically the settings), or end the process with the
    configuration error's message and no traceback (exit status 2)."""
    try:
        return load()
    except ConfigurationError as exc:
        import sys

        print(exc, file=sys.stderr)
        raise SystemExit(2) from None
