"""Replica math of the basic canary and the HPA split, table-driven."""

from __future__ import annotations

import doctest

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from resonance_operator.rollout import canary
from resonance_operator.rollout.canary import (
    ConnectionLoad,
    Current,
    HpaRange,
    basic_canary_replicas,
    connection_floor,
    resolve_int_or_percent,
    rollout_hpa,
    surge_and_unavailable,
)


def test_docstring_examples() -> None:
    assert doctest.testmod(canary).failed == 0


# desired, weight, (stable, canary, canary available), surge, unavailable, load, -> (stable, canary, held)
CASES = [
    # The worked examples of basic_canary_replicas.
    (10, 10, (10, 0, None), 1, 0, None, (10, 1, 0)),
    (10, 10, (10, 1, 1), 1, 0, None, (9, 1, 0)),
    (10, 10, (10, 0, None), 1, 1, None, (9, 1, 0)),
    (10, 50, (10, 0, None), "25%", 0, ConnectionLoad(7000, 1000), (10, 5, 2)),
    (10, 50, (10, 5, 5), "25%", 0, ConnectionLoad(7000, 1000), (7, 5, 2)),
    (10, 0, (9, 1, None), 1, 0, None, (10, 1, 0)),
    (10, 0, (10, 1, None), 1, 0, None, (10, 0, 0)),
    # A not-yet-available canary keeps stable at full strength with maxUnavailable 0.
    (10, 50, (10, 5, 0), "25%", 0, None, (10, 5, 0)),
    # Full weight: stable goes to zero once the canary carries everything.
    (4, 100, (0, 4, 4), 1, 0, None, (0, 4, 0)),
    (4, 100, (4, 0, None), 1, 0, None, (4, 1, 0)),
    # Any weight above zero gets at least one canary Pod.
    (10, 1, (10, 0, None), 1, 0, None, (10, 1, 0)),
    # Empty connections hold nothing; the floor never exceeds the stable Pods that exist.
    (10, 50, (10, 5, 5), 1, 0, ConnectionLoad(0, 1000), (5, 5, 0)),
    (10, 50, (3, 5, 5), 1, 0, ConnectionLoad(90_000, 1000), (5, 5, 0)),
    # Zero desired replicas: nothing to run.
    (0, 50, (0, 0, None), 0, 0, None, (0, 0, 0)),
]


@pytest.mark.parametrize(("desired", "weight", "current", "surge", "unavailable", "load", "expected"), CASES)
def test_basic_canary_table(
    desired: int,
    weight: int,
    current: tuple[int, int, int | None],
    surge: int | str,
    unavailable: int | str,
    load: ConnectionLoad | None,
    expected: tuple[int, int, int],
) -> None:
    split = basic_canary_replicas(
        desired, weight, Current(*current), max_surge=surge, max_unavailable=unavailable, load=load
    )
    assert (split.stable, split.canary, split.held_for_connections) == expected


@settings(max_examples=300, deadline=None)
@given(
    desired=st.integers(1, 30),
    weight=st.integers(0, 100),
    stable=st.integers(0, 30),
    canary_count=st.integers(0, 30),
    surge=st.integers(0, 5),
    unavailable=st.integers(0, 5),
    connections=st.integers(0, 50_000),
)
def test_steps_reach_the_target_without_breaking_the_bounds(
    desired: int,
    weight: int,
    stable: int,
    canary_count: int,
    surge: int,
    unavailable: int,
    connections: int,
) -> None:
    """Step by step (each step's Pods becoming available), the split converges and never
    shrinks stable below its connections' need or starts below the availability floor."""
    load = ConnectionLoad(connections, 1000)
    current = Current(stable, canary_count)
    split = basic_canary_replicas(
        desired, weight, current, max_surge=surge, max_unavailable=unavailable, load=load
    )
    floor = min(stable, connection_floor(connections, 1000))
    for _ in range(4 * desired + 10):
        assert split.stable >= min(floor, current.stable)
        assert split.stable >= 0
        assert split.canary >= 0
        current = Current(split.stable, split.canary)
        split = basic_canary_replicas(
            desired, weight, current, max_surge=surge, max_unavailable=unavailable, load=load
        )
        if split.settled:
            break
    assert split.settled
    assert split.stable >= floor
    assert split.target_canary + split.target_stable == desired + split.held_for_connections


@pytest.mark.parametrize(
    ("value", "total", "round_up", "expected"),
    [
        ("25%", 10, True, 3),
        ("25%", 10, False, 2),
        (3, 10, True, 3),
        (" 0 ", 5, False, 0),
        ("100%", 7, True, 7),
    ],
)
def test_int_or_percent(value: int | str, total: int, round_up: bool, expected: int) -> None:
    assert resolve_int_or_percent(value, total, round_up=round_up) == expected


@pytest.mark.parametrize("value", ["-1", "-5%", "x"])
def test_int_or_percent_refuses_nonsense(value: str) -> None:
    with pytest.raises(ValueError, match=r"negative|invalid literal"):
        resolve_int_or_percent(value, 10, round_up=True)


def test_zero_surge_and_zero_unavailable_surge_by_one() -> None:
    assert surge_and_unavailable("0", "0", 10) == (1, 0)
    assert surge_and_unavailable("0%", "10%", 10) == (0, 1)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="weight"):
        basic_canary_replicas(10, 101, Current(10, 0))
    with pytest.raises(ValueError, match="weight"):
        basic_canary_replicas(-1, 10, Current(10, 0))
    with pytest.raises(ValueError, match="capacity"):
        connection_floor(10, 0)


@pytest.mark.parametrize(
    ("low", "high", "weight", "floor", "stable", "canary_range"),
    [
        (2, 10, 20, 0, (1, 8), (1, 2)),
        (2, 10, 20, 6, (6, 8), (1, 2)),
        (2, 10, 20, 9, (9, 9), (1, 2)),
        (2, 10, 0, 0, (2, 10), None),
        (4, 20, 50, 0, (2, 10), (2, 10)),
        (2, 10, 100, 0, (0, 0), (2, 10)),
        (2, 10, 100, 3, (3, 3), (2, 10)),
    ],
)
def test_rollout_hpa_table(
    low: int,
    high: int,
    weight: int,
    floor: int,
    stable: tuple[int, int],
    canary_range: tuple[int, int] | None,
) -> None:
    split = rollout_hpa(low, high, weight, stable_connection_floor=floor)
    assert split.stable == HpaRange(*stable)
    assert split.canary == (None if canary_range is None else HpaRange(*canary_range))


def test_rollout_hpa_refuses_a_bad_range() -> None:
    with pytest.raises(ValueError, match="HPA range"):
        rollout_hpa(5, 2, 10)
