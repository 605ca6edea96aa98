"""SampleBuffer: validation of whole batches, missing values as gaps, trimming and segments."""

from __future__ import annotations

import numpy as np
import pytest
from resonance_worker.domain.biometrics.buffer import SampleBuffer
from resonance_worker.domain.biometrics.errors import (
    BatchTooLargeError,
    BiometricsError,
    InvalidSamplesError,
    TimestampsNotIncreasingError,
    UnsupportedRateError,
)


def make(channels: int = 1, keep_s: float = 10.0) -> SampleBuffer:
    return SampleBuffer(
        sensor="ppg",
        channels=channels,
        keep_s=keep_s,
        min_rate_hz=5.0,
        max_rate_hz=200.0,
        max_batch_samples=100,
        max_batch_span_s=5.0,
        max_gap_s=1.0,
    )


def test_accepts_a_batch_and_returns_the_window() -> None:
    buffer = make()
    assert buffer.append([0.0, 0.05, 0.1], [1.0, 2.0, 3.0]) == 3
    times, values = buffer.window(0.04, 0.1)
    assert times.tolist() == [0.05, 0.1]
    assert values[:, 0].tolist() == [2.0, 3.0]
    assert (buffer.first_time, buffer.last_time, len(buffer)) == (0.0, 0.1, 3)


def test_empty_batch_changes_nothing() -> None:
    buffer = make()
    assert buffer.append([], []) == 0
    assert buffer.last_time is None and buffer.first_time is None


@pytest.mark.parametrize(
    ("timestamps", "values", "error", "message"),
    [
        ([0.0, 0.1, 0.1], [1, 2, 3], TimestampsNotIncreasingError, "strictly increase"),
        ([0.0, 0.2, 0.1], [1, 2, 3], TimestampsNotIncreasingError, "strictly increase"),
        ([0.0, float("nan"), 0.2], [1, 2, 3], InvalidSamplesError, "finite"),
        ([0.0, 0.1], [1, 2, 3], InvalidSamplesError, "2 timestamps but 3 samples"),
        ([[0.0, 0.1]], [[1, 2]], InvalidSamplesError, "flat list"),
        (["a", "b"], [1, 2], InvalidSamplesError, "numbers"),
        ([0.0, 0.1, 0.2], [[1, 2], [3, 4], [5, 6]], InvalidSamplesError, "exactly 1 value"),
        (list(np.arange(101) * 0.01), [0.0] * 101, BatchTooLargeError, "101 samples"),
        ([0.0, 0.05, 6.0], [1, 2, 3], BatchTooLargeError, "spans"),
        ([0.0, 0.5, 1.0], [1, 2, 3], UnsupportedRateError, "2.0 Hz"),
        ([0.0, 0.001, 0.002], [1, 2, 3], UnsupportedRateError, "1000.0 Hz"),
        ([0.0, 0.05, 0.1], [1, 1e12, 3], InvalidSamplesError, "not sensor readings"),
    ],
)
def test_refuses_bad_batches_whole(
    timestamps: list[float], values: list[float], error: type, message: str
) -> None:
    buffer = make()
    buffer.append([-1.0, -0.95, -0.9], [7.0, 8.0, 9.0])
    with pytest.raises(error, match=message) as caught:
        buffer.append(timestamps, values)
    assert isinstance(caught.value, BiometricsError)
    # Nothing of the refused batch was stored; the earlier batch is intact.
    assert len(buffer) == 3 and buffer.last_time == -0.9


def test_refuses_a_batch_that_goes_back_in_time_across_batches() -> None:
    buffer = make()
    buffer.append([1.0, 1.05, 1.1], [1, 2, 3])
    with pytest.raises(TimestampsNotIncreasingError, match="not after the previous sample"):
        buffer.append([1.1, 1.15], [4, 5])
    with pytest.raises(TimestampsNotIncreasingError):
        buffer.append([0.5], [4])
    assert buffer.append([1.15], [4]) == 1


def test_missing_values_become_gaps_for_every_channel() -> None:
    buffer = make(channels=3)
    buffer.append([0.0, 0.05, 0.1], [[1, 2, 3], [4, float("nan"), 6], [7, 8, float("inf")]])
    _, values = buffer.window(0.0, 1.0)
    assert np.isnan(values[1]).all() and np.isnan(values[2]).all()
    assert values[0].tolist() == [1, 2, 3]


def test_old_samples_are_dropped_past_keep_seconds() -> None:
    buffer = make(keep_s=1.0)
    for start in range(4):
        buffer.append(start + np.arange(10) * 0.1, np.ones(10))
    assert buffer.first_time == pytest.approx(2.9)
    assert buffer.last_time == pytest.approx(3.9)


def test_segment_starts_after_the_last_long_gap() -> None:
    buffer = make(keep_s=100.0)
    assert buffer.segment_start(1.0) is None
    buffer.append(np.arange(20) * 0.1, np.ones(20))  # 0.0 .. 1.9
    assert buffer.segment_start(1.9) == pytest.approx(0.0)
    buffer.append(5.0 + np.arange(20) * 0.1, np.ones(20))  # gap of 3.1 s
    assert buffer.segment_start(6.9) == pytest.approx(5.0)
    # The signal stopped more than max_gap_s before `end`: no current segment.
    assert buffer.segment_start(9.0) is None


def test_trimming_does_not_move_the_segment_start() -> None:
    buffer = make(keep_s=1.0)
    for start in range(5):
        buffer.append(start + np.arange(10) * 0.1, np.ones(10))
    assert buffer.first_time == pytest.approx(3.9, abs=0.11)
    assert buffer.segment_start(4.9) == pytest.approx(0.0)


def test_a_run_of_missing_values_splits_segments() -> None:
    buffer = make(keep_s=100.0)
    values = np.ones(40)
    values[10:30] = np.nan  # 2 s of NaN
    buffer.append(np.arange(40) * 0.1, values)
    assert buffer.segment_start(3.9) == pytest.approx(3.0)
    buffer.append([4.0, 4.1], [np.nan, np.nan])
    assert buffer.segment_start(4.1) == pytest.approx(3.0)
    assert buffer.segment_start(5.5) is None
