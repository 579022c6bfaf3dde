"""One logging setup for every entrypoint, so services log alike."""

from __future__ import annotations

import logging
import re

_LEVELS = {
    "crit": logging.CRITICAL,
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}


# Our own packages log ids that come from outside (processor, camera, frame ids); a newline
# or escape sequence in one would forge a log line or drive the reader's terminal.
OWN_LOGGERS = frozenset(
    {
        "app",
        "agents",
        "bridge",
        "tables",
        "bench",
        "capture",
        "migrate",
        "relay",
        "frame_buffer_sdk",
        "sample_processors",
    }
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def escape_controls(text: str) -> str:
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class EscapedRecord(logging.LogRecord):
    """A record of ours whose message shows control characters escaped (tracebacks stay as they are)."""

    def getMessage(self) -> str:
        message = super().getMessage()
        return escape_controls(message) if self.name.partition(".")[0] in OWN_LOGGERS else message


def setup_logging(level: str = "info") -> None:
    # The record factory, not a formatter: Faust replaces the handlers when a worker starts.
    logging.setLogRecordFactory(EscapedRecord)
    logging.basicConfig(
        level=_LEVELS.get(level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # aiokafka logs every rebalance step at INFO; keep ours readable.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, _LEVELS.get(level, logging.INFO)))
