"""Percentiles and reservoirs of the load tool."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.load.stats import PerSecond, Reservoir, merge_summaries, percentile, summarize

samples = st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=300)


def test_nearest_rank_on_one_to_hundred() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.95) == 95.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile(values, 0.0) == 1.0


@given(samples, st.floats(min_value=0, max_value=1))
def test_percentile_is_an_observed_value_with_enough_samples_at_or_below(
    values: list[float], q: float
) -> None:
    ordered = sorted(values)
    p = percentile(ordered, q)
    assert p in ordered
    assert sum(v <= p for v in ordered) >= math.ceil(q * len(ordered))


def test_percentile_rejects_empty_and_out_of_range() -> None:
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 0.5)
    with pytest.raises(ValueError, match="within"):
        percentile([1.0], 1.5)


def test_summary_of_known_values() -> None:
    summary = summarize([5.0, 1.0, 3.0, 2.0, 4.0])
    assert summary is not None
    assert (summary.count, summary.p50_ms, summary.p99_ms, summary.max_ms, summary.mean_ms) == (
        5,
        3.0,
        5.0,
        5.0,
        3.0,
    )
    assert summary.as_dict()["p95_ms"] == 5.0
    assert summarize([]) is None


def test_reservoir_keeps_everything_below_capacity_and_a_bounded_sample_above() -> None:
    small = Reservoir.from_values([3.0, 1.0, 2.0], capacity=10)
    assert sorted(small.samples) == [1.0, 2.0, 3.0]
    big = Reservoir(100, seed=1)
    for value in range(10_000):
        big.add(float(value))
    assert len(big.samples) == 100
    assert big.seen == 10_000
    assert big.maximum == 9999.0
    # A uniform sample of 0..9999 has its median near 5000.
    assert 3000 < sorted(big.samples)[50] < 7000
    with pytest.raises(ValueError, match="capacity"):
        Reservoir(0)


@given(st.lists(samples, min_size=1, max_size=4))
def test_merging_unfilled_reservoirs_equals_summarising_everything(parts: list[list[float]]) -> None:
    reservoirs = [Reservoir.from_values(p, capacity=1000) for p in parts]
    assert merge_summaries(reservoirs) == summarize([v for p in parts for v in p])


def test_merge_weights_overflowing_reservoirs_and_keeps_the_exact_maximum() -> None:
    slow = Reservoir(10, seed=2)
    for _ in range(1000):
        slow.add(100.0)
    slow.add(5000.0)
    fast = Reservoir.from_values([1.0] * 10, capacity=10)
    merged = merge_summaries([slow, fast, Reservoir(5)])
    assert merged is not None
    assert merged.count == 1011
    assert merged.max_ms == 5000.0
    assert merged.p50_ms == 100.0  # the slow part saw 100× more messages, so it dominates
    assert merge_summaries([Reservoir(3)]) is None


def test_per_second_rows_merge_counts_maxima_and_slow_deliveries_across_processes() -> None:
    first, second = PerSecond(threshold_ms=100.0), PerSecond(threshold_ms=100.0)
    for value in (1.0, 150.0, 3.0):
        first.add(0, value)
    second.add(0, 99.0)
    second.add(2, 250.0)
    assert PerSecond.merge([first, second]) == [
        {"second": 0, "deliveries": 4, "max_ms": 150.0, "over_threshold": 1},
        {"second": 2, "deliveries": 1, "max_ms": 250.0, "over_threshold": 1},
    ]
    assert PerSecond.merge([]) == []
