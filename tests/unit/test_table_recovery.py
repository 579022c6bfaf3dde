"""Which table partitions are restored from scratch, and the Faust code that rule hooks into."""

from __future__ import annotations

import hashlib
import inspect
from collections import Counter
from importlib.metadata import version

from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.types import TP

from tables.recovery import past_the_end

A, B, C, D = (TP("app-t-changelog", n) for n in range(4))

# tables/recovery.py overrides Recovery._build_offsets and relies on _restart_recovery calling it
# for active partitions after their highwaters and before the consistency check, and on
# TableManager.recovery building Recovery lazily. A Faust upgrade must be read against that.
UPSTREAM = {
    "Recovery._build_offsets": (
        Recovery._build_offsets,
        "27eec86be06cb51f66dfd2572be2f9b41acd22c3570239bb5c554bd94e59a1d6",
    ),
    "Recovery._restart_recovery": (
        Recovery._restart_recovery.fun,
        "6bd8a8558a2dffe4c60b8150f23d721baa6b3d658367f911a3ad2187e20efc6f",
    ),
    "TableManager.recovery": (
        TableManager.recovery.fget,
        "f0bf5de78b4c3d235c3554010480f407010ccb7c481c68852a985542b952df32",
    ),
}


def test_only_checkpoints_past_the_changelogs_last_offset_are_restored() -> None:
    offsets: Counter[TP] = Counter({A: 74, B: 10, C: -1, D: 5})
    highwaters = {A: -1, B: 10, C: -1}  # D: no highwater known
    assert past_the_end(offsets, highwaters) == {A: (74, -1)}


def test_a_partition_without_checkpoint_is_never_restored() -> None:
    assert past_the_end(Counter({A: None}), {A: -1}) == {}  # type: ignore[dict-item]


def test_faust_is_the_version_the_recovery_hook_was_written_against() -> None:
    assert version("faust-streaming") == "0.15.3"
    for name, (function, digest) in UPSTREAM.items():
        source = inspect.getsource(function)
        assert hashlib.sha256(source.encode()).hexdigest() == digest, f"{name} changed upstream: re-read it"
