"""Backpressure levels with hysteresis, the router's own level, and keep-latest shedding."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.backpressure import (
    LevelTracker,
    Thresholds,
    level_for,
    next_level,
    router_level,
    utilisation,
)
from app.configs import thresholds
from core.levels import Level
from core.settings import load_settings

T = Thresholds(elevated=0.6, high=0.8, critical=0.95, hysteresis=0.05)


@pytest.mark.parametrize(
    ("u", "level"),
    [
        (0.0, Level.NORMAL),
        (0.59, Level.NORMAL),
        (0.6, Level.ELEVATED),
        (0.79, Level.ELEVATED),
        (0.8, Level.HIGH),
        (0.949, Level.HIGH),
        (0.95, Level.CRITICAL),
        (7.0, Level.CRITICAL),
        (math.inf, Level.CRITICAL),
    ],
)
def test_level_boundaries_going_up_from_normal(u: float, level: Level) -> None:
    assert level_for(u, T) is level
    assert next_level(Level.NORMAL, u, T) is level


def test_going_up_is_immediate_even_skipping_levels() -> None:
    assert next_level(Level.NORMAL, 0.97, T) is Level.CRITICAL
    assert next_level(Level.ELEVATED, 0.8, T) is Level.HIGH


def test_going_down_needs_the_hysteresis_margin() -> None:
    assert next_level(Level.HIGH, 0.79, T) is Level.HIGH
    assert next_level(Level.HIGH, 0.751, T) is Level.HIGH
    assert next_level(Level.HIGH, 0.749, T) is Level.ELEVATED
    assert next_level(Level.CRITICAL, 0.91, T) is Level.CRITICAL
    assert next_level(Level.CRITICAL, 0.89, T) is Level.HIGH
    assert next_level(Level.ELEVATED, 0.56, T) is Level.ELEVATED
    assert next_level(Level.ELEVATED, 0.54, T) is Level.NORMAL


def test_a_steep_drop_steps_down_several_levels_at_once() -> None:
    assert next_level(Level.CRITICAL, 0.7, T) is Level.ELEVATED
    assert next_level(Level.CRITICAL, 0.1, T) is Level.NORMAL


def test_hysteresis_stops_flapping_around_a_threshold() -> None:
    """u oscillating around 0.8 (HIGH's start): without hysteresis the level would flap each sample."""
    samples = [0.78, 0.81, 0.79, 0.82, 0.77, 0.80, 0.78, 0.81, 0.79, 0.76]
    tracker = LevelTracker(T)
    seen = [tracker.update("p1", u) for u in samples]
    assert seen[0] is Level.ELEVATED
    assert seen[1:] == [Level.HIGH] * (len(samples) - 1)
    memoryless = [level_for(u, T) for u in samples]
    flips = sum(1 for a, b in pairwise(memoryless) if a is not b)
    assert flips >= 6  # the same samples without memory do flap
    assert tracker.update("p1", 0.74) is Level.ELEVATED


@given(st.sampled_from(list(Level)), st.floats(min_value=0, max_value=3, allow_nan=False))
def test_next_level_never_lags_behind_rising_load_nor_drops_within_the_margin(previous: Level, u: float) -> None:
    new = next_level(previous, u, T)
    raw = level_for(u, T)
    assert new >= raw
    if new < previous:
        # it left `previous` only because u fell below that level's start minus hysteresis
        assert u < T.start_of(previous) - T.hysteresis
    if new > raw:
        assert new <= previous


def test_nan_utilisation_is_an_error() -> None:
    with pytest.raises(ValueError, match="NaN"):
        next_level(Level.NORMAL, math.nan, T)


def test_thresholds_are_validated_and_read_from_settings() -> None:
    with pytest.raises(ValueError):
        Thresholds(elevated=0.8, high=0.6, critical=0.95)
    with pytest.raises(ValueError):
        Thresholds(hysteresis=0.7)
    s = load_settings(bp_elevated=0.5, bp_high=0.7, bp_critical=0.9, bp_hysteresis=0.1)
    assert thresholds(s) == Thresholds(0.5, 0.7, 0.9, 0.1)


def test_utilisation_clamps_negative_lag_and_rejects_zero_capacity() -> None:
    assert utilisation(50, 100) == 0.5
    assert utilisation(-3, 100) == 0.0
    with pytest.raises(ValueError):
        utilisation(1, 0)


def test_level_tracker_keeps_one_memory_per_processor_and_forgets() -> None:
    tracker = LevelTracker(T)
    assert tracker.update("a", 0.9) is Level.HIGH
    assert tracker.update("b", 0.1) is Level.NORMAL
    assert tracker.update("a", 0.78) is Level.HIGH
    assert tracker.update("b", 0.78) is Level.ELEVATED
    assert tracker.levels() == {"a": Level.HIGH, "b": Level.ELEVATED}
    tracker.forget("a")
    assert tracker.level("a") is Level.NORMAL
    assert tracker.update("a", 0.78) is Level.ELEVATED


def test_router_level_sums_partitions_against_the_budget() -> None:
    budget = 1000
    assert router_level({}, budget, T) is Level.NORMAL
    assert router_level({0: 300, 1: 350}, budget, T) is Level.ELEVATED
    assert router_level({0: 500, 1: 460}, budget, T) is Level.CRITICAL
    assert router_level({0: 600, 1: -900}, budget, T) is Level.ELEVATED  # negative lag clamps to 0
    assert router_level({0: 400, 1: 390}, budget, T, previous=Level.HIGH) is Level.HIGH
    assert router_level({0: 400, 1: 340}, budget, T, previous=Level.HIGH) is Level.ELEVATED
    with pytest.raises(ValueError):
        router_level({0: 1}, 0, T)


# --- shedding -------------------------------------------------------------------------------
