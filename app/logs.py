"""One logging setup for every entrypoint, so services log alike."""

from __future__ import annotations

import logging

_LEVELS = {
    "crit": logging.CRITICAL,
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}


def setup_logging(level: str = "info") -> None:
    logging.basicConfig(
        level=_LEVELS.get(level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # aiokafka logs every rebalance step at INFO; keep ours readable.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, _LEVELS.get(level, logging.INFO)))
