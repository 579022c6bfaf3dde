"""Keep the cycle collector's full passes short in a long-running service.

A started service holds about 100,000 long-lived objects (modules, classes, Faust's, aiokafka's
and pydantic's machinery). Every full collection walks all of them again with the event loop
stopped: 80-150 ms on the 2-core reference machine, several times a minute under load, which was
the p99 tail at 5,000 frames/s (docs/benchmarks.md). Frozen objects are left out of those walks.
They are still freed by reference counting; only cyclic garbage among them would stay, and the
collection just before the freeze leaves none then.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger(__name__)


def freeze_long_lived(why: str) -> int:
    """Collect once, then move every object alive now out of later full collections.

    Call it where the service is paused anyway (started, or a rebalance done), since the
    collection itself is one full pass. Returns how many objects are frozen in all."""
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.debug("heap frozen after %s: %d objects, %.0f ms", why, frozen, (time.perf_counter() - started) * 1000)
    return frozen
