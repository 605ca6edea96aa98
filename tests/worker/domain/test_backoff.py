"""Retry delays: doubling from the first delay up to the cap, jittered by the injected random source."""

from __future__ import annotations

import random

import pytest
from resonance_worker.domain.backoff import JITTER, Backoff


def test_the_ceiling_doubles_up_to_the_cap() -> None:
    retry = Backoff(first_s=1.0, cap_s=30.0)
    assert [retry.ceiling(n) for n in range(7)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert retry.ceiling(-3) == 1.0  # no shorter than the first delay
    assert retry.ceiling(10_000) == 30.0  # a long outage overflows nothing


def test_the_delay_is_the_ceiling_times_the_drawn_factor() -> None:
    retry = Backoff(first_s=0.05, cap_s=5.0)
    drawn: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        drawn.append((low, high))
        return high

    assert retry.delay(3, uniform) == pytest.approx(0.4)
    assert drawn == [JITTER]
    assert retry.delay(2, lambda low, _: low) == pytest.approx(0.1)


def test_a_seeded_source_repeats_and_stays_within_the_jitter() -> None:
    retry = Backoff(first_s=1.0, cap_s=300.0)
    first = [retry.delay(n, random.Random(7).uniform) for n in range(10)]
    again = [retry.delay(n, random.Random(7).uniform) for n in range(10)]
    assert first == again
    assert all(0.5 * retry.ceiling(n) <= d <= retry.ceiling(n) for n, d in enumerate(first))


@pytest.mark.parametrize(
    ("first", "cap"), [(0.0, 1.0), (1.0, -1.0), (float("nan"), 1.0), (1.0, float("inf"))]
)
def test_bad_delays_are_refused(first: float, cap: float) -> None:
    with pytest.raises(ValueError, match="positive finite"):
        Backoff(first_s=first, cap_s=cap)
