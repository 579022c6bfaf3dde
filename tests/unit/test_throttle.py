"""The bridge's answer to orchestrator backpressure, and the Redis names it shares."""

from __future__ import annotations

import json

import pytest

from bridge.names import default_consumer_name
from bridge.throttle import (
    PAUSED_RECHECK_SECONDS,
    SLOWED_SLEEP_SECONDS,
    STATE_GAUGE,
    State,
    decide,
    parse_level,
)
from core.levels import Level
from frame_buffer_sdk.keys import backpressure_key, bridge_state_key


@pytest.mark.parametrize("level", [Level.NORMAL, Level.ELEVATED])
def test_normal_and_elevated_run_at_full_speed(level: Level) -> None:
    action = decide(level, 500)
    assert action.state is State.RUNNING
    assert action.reads
    assert action.batch_size == 500
    assert action.sleep_after == 0


def test_high_slows_down_with_smaller_batches_and_a_pause() -> None:
    action = decide(Level.HIGH, 500)
    assert action.state is State.SLOWED
    assert action.reads
    assert 1 <= action.batch_size < 500
    assert action.sleep_after == SLOWED_SLEEP_SECONDS > 0


def test_high_never_reads_zero_entries() -> None:
    assert decide(Level.HIGH, 1).batch_size == 1
    assert decide(Level.HIGH, 3).batch_size == 1


def test_critical_pauses_reading_and_rechecks() -> None:
    action = decide(Level.CRITICAL, 500)
    assert action.state is State.PAUSED
    assert not action.reads
    assert action.batch_size == 0
    assert action.sleep_after == PAUSED_RECHECK_SECONDS


def doc(level: object, **extra: object) -> bytes:
    return json.dumps({"level": level, "router_lag": 10, "partitions": {"0": 10}, **extra}).encode()


@pytest.mark.parametrize(
    ("raw", "level"),
    [
        (None, Level.NORMAL),  # missing or expired key
        (doc("NORMAL"), Level.NORMAL),
        (doc("ELEVATED"), Level.ELEVATED),
        (doc("HIGH"), Level.HIGH),
        (doc("CRITICAL"), Level.CRITICAL),
        (doc("critical"), Level.CRITICAL),
        (doc("CRITICAL").decode(), Level.CRITICAL),
        (doc("PANIC"), Level.NORMAL),
        (doc(None), Level.NORMAL),
        (doc(3), Level.NORMAL),
        (b"{not json", Level.NORMAL),
        (b"\xff\xfe", Level.NORMAL),
        (b'["CRITICAL"]', Level.NORMAL),
        (b"", Level.NORMAL),
    ],
)
def test_parse_level(raw: bytes | str | None, level: Level) -> None:
    assert parse_level(raw) is level


def test_every_state_has_a_gauge_value() -> None:
    assert STATE_GAUGE == {State.RUNNING: 0, State.SLOWED: 1, State.PAUSED: 2}


def test_state_values_are_the_wire_contract() -> None:
    assert {s.value for s in State} == {"running", "slowed", "paused"}


def test_redis_key_names() -> None:
    assert backpressure_key("fo") == "fo:backpressure"
    assert bridge_state_key("fo", "host-1-abc") == "fo:bridge:host-1-abc"


def test_default_consumer_names_are_unique() -> None:
    names = {default_consumer_name() for _ in range(50)}
    assert len(names) == 50
