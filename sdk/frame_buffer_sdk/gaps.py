"""Offsets of a processor's topic follow each other: nothing here writes transactions or
compacts, so a fetch whose offsets jump ahead of the last one handled lost records on the way.
Committing past them would lose those frames for good, so the guard fetches the partition again
from the first missing offset. A gap still there after ``retries`` fetches is taken as real
(e.g. retention deleted the records), logged as an error and counted, and the partition goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Generic, Protocol, TypeVar

log = logging.getLogger(__name__)

DEFAULT_RETRIES = 3


class _Offset(Protocol):
    @property
    def offset(self) -> int: ...


R = TypeVar("R", bound=_Offset)
TP = TypeVar("TP")


class GapGuard(Generic[TP]):
    """Per partition, the next offset expected. Not known after an assignment: the first batch sets it."""

    def __init__(self, retries: int = DEFAULT_RETRIES) -> None:
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self.retries = retries
        self._next: dict[TP, int] = {}
        self._refetched: dict[TP, tuple[int, int]] = {}  # tp -> (missing offset, fetches so far)
        self.accepted = 0  # offsets given up on after the retries

    def reset(self, tps: Iterable[TP]) -> None:
        """Partitions (re)assigned: the consumer seeks to their committed offsets, which may be anywhere."""
        for tp in tps:
            self._next.pop(tp, None)
            self._refetched.pop(tp, None)

    def contiguous(self, tp: TP, part: Sequence[R]) -> tuple[Sequence[R], int | None]:
        """The records of ``part`` up to the first gap, and the offset to fetch again from (None: no gap)."""
        expected = self._next.get(tp)
        for i, record in enumerate(part):
            offset = record.offset
            if expected is not None and offset > expected:
                missing, fetches = self._refetched.get(tp, (expected, 0))
                if missing != expected:
                    fetches = 0
                if fetches < self.retries:
                    self._refetched[tp] = (expected, fetches + 1)
                    log.warning(
                        "%s: offsets %d-%d missing from the fetch; fetching again from %d (%d of %d)",
                        tp,
                        expected,
                        offset - 1,
                        expected,
                        fetches + 1,
                        self.retries,
                    )
                    self._next[tp] = expected
                    return part[:i], expected
                self.accepted += offset - expected
                log.error(
                    "%s: offsets %d-%d still missing after %d fetches; going on without them",
                    tp,
                    expected,
                    offset - 1,
                    self.retries,
                )
                self._refetched.pop(tp, None)
            expected = offset + 1 if expected is None or offset >= expected else expected
        if expected is not None:
            self._next[tp] = expected
        return part, None

    def rewound(self, tp: TP, offset: int) -> None:
        """The batch from ``offset`` will be fetched again (a failed batch): expect it next."""
        self._next[tp] = offset
