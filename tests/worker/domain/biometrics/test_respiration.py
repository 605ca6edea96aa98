"""Breathing rate from one modulation (spectral peak cross-checked by counting), and the fusion rule."""

from __future__ import annotations

import numpy as np
import pytest
from resonance_worker.domain.biometrics.respiration import (
    breathing_series,
    counted_rates,
    fuse,
    modulation_rate,
    spectral_peak_rate,
)


def beat_series(rate_bpm: float, seconds: float = 60.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One value per beat (irregular beats, ≈ 75 bpm) swinging at ``rate_bpm`` breaths/min plus drift."""
    rng = np.random.default_rng(seed)
    beats = np.cumsum(rng.uniform(0.7, 0.9, int(seconds / 0.8)))
    return beats, np.sin(2 * np.pi * (rate_bpm / 60.0) * beats) + 0.01 * beats


@pytest.mark.parametrize("rate", [6.0, 12.0, 20.0, 30.0])
def test_a_steady_rhythm_is_found_by_spectrum_and_count_alike(rate: float) -> None:
    estimate = modulation_rate(*beat_series(rate))
    assert estimate is not None and estimate.rate is not None
    assert estimate.rate == pytest.approx(rate, abs=0.6)
    assert estimate.spectral == pytest.approx(rate, abs=0.6)
    assert estimate.counted == pytest.approx(rate, abs=1.0)


def test_too_short_flat_or_missing_series_give_nothing() -> None:
    t = np.linspace(0, 10, 12)
    assert modulation_rate(t, np.sin(t)) is None  # under 20 s
    long = np.linspace(0, 60, 70)
    assert modulation_rate(long, np.ones(70)) is None
    nan_heavy = np.full(70, np.nan)
    nan_heavy[:3] = 1.0
    assert modulation_rate(long, nan_heavy) is None
    # A real rhythm that swings less than the required minimum is not breathing.
    beats, values = beat_series(15.0)
    assert modulation_rate(beats, 0.01 * values, min_swing=0.05) is None
    assert breathing_series(t, np.sin(t)) is None


def test_broadband_noise_has_no_dominant_rhythm() -> None:
    t = np.arange(0, 60, 0.25)
    # Equal power at many frequencies: no peak holds enough of the band.
    values = sum(np.sin(2 * np.pi * f * t + f * 7) for f in np.arange(0.1, 0.7, 0.02))
    prepared = breathing_series(t, values)
    assert prepared is not None
    assert spectral_peak_rate(prepared[1]) is None
    estimate = modulation_rate(t, values)
    assert estimate is not None and estimate.rate is None


def test_a_slow_wave_below_the_band_is_leakage_not_a_breathing_rate() -> None:
    # 3 /min (Mayer-like or a drifting baseline): the spectrum is still rising at the band's edge.
    t = np.arange(0, 60, 0.25)
    prepared = breathing_series(t, np.sin(2 * np.pi * 0.05 * t))
    assert prepared is not None
    assert spectral_peak_rate(prepared[1]) is None


def irregular_breathing(seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """60 s at 4 Hz of breaths 1.5–8 s long and of random depth (like the pyphysio belt), and
    their true mean rate."""
    rng = np.random.default_rng(seed)
    lengths = rng.uniform(1.5, 8.0, 60)
    starts = np.concatenate(([0.0], np.cumsum(lengths)))
    t = np.arange(0, 60, 0.25)
    breath = np.searchsorted(starts, t, side="right") - 1
    phase = breath + (t - starts[breath]) / lengths[breath]
    depth = rng.uniform(0.3, 2.0, 60)[breath]
    return t, depth * np.sin(2 * np.pi * phase), 60.0 / float(np.mean(lengths[: breath[-1]]))


def test_irregular_breathing_gives_the_mean_rate_or_no_rate_never_a_wrong_one() -> None:
    outcomes = []
    for seed in range(8):
        t, values, truth = irregular_breathing(seed)
        estimate = modulation_rate(t, values)
        assert estimate is not None
        if estimate.rate is not None:
            assert estimate.rate == pytest.approx(truth, abs=2.5)
        outcomes.append(estimate.rate is not None)
    assert 4 <= sum(outcomes) < 8  # measured: 7 of 8 with a rate (errors 0.1–1.5 /min)
    # Where spectrum and count part ways, the series has a rhythm but no single rate.
    t, values, _ = irregular_breathing(7)
    estimate = modulation_rate(t, values)
    assert estimate is not None and estimate.rate is None
    assert estimate.spectral is not None and estimate.counted is not None
    assert abs(estimate.spectral - estimate.counted) > 3.0


def test_counting_needs_three_breaths_and_some_extrema() -> None:
    grid = np.arange(0, 30, 0.25)
    # Two deep breaths and small ones between: the strict threshold finds too few to count.
    deep = 3.0 * np.exp(-(((grid - 8.0) / 1.0) ** 2)) + 3.0 * np.exp(-(((grid - 20.0) / 1.0) ** 2))
    shallow = 0.4 * np.sin(2 * np.pi * 0.33 * grid)
    strict, loose = counted_rates(grid, deep + shallow, (0.9, 0.05))
    assert strict is None and loose is not None and 10.0 <= loose <= 22.0  # the deep ones hide a few
    assert spectral_peak_rate(np.zeros(grid.size)) is None
    assert counted_rates(grid, np.zeros(grid.size), (0.3,)) == [None]
    assert counted_rates(grid, np.sin(2 * np.pi * 0.05 * grid), (0.3,)) == [
        None
    ]  # 1.5 cycles, 2 peaks at most


def test_fuse_averages_agreeing_sources() -> None:
    assert fuse({"a": 14.0, "b": 15.0, "c": 16.0}, 3.0) == (15.0, False)


def test_fuse_keeps_two_of_three_when_one_is_an_outlier() -> None:
    assert fuse({"a": 14.0, "b": 14.5, "c": 25.0}, 3.0) == (14.25, False)


def test_fuse_gives_no_estimate_when_sources_disagree() -> None:
    assert fuse({"a": 8.0, "b": 14.0, "c": 25.0}, 3.0) == (None, True)
    assert fuse({"a": 8.0, "b": 20.0, "c": None}, 3.0) == (None, True)
    # Two slow-wave-caught modulations 3.3 /min apart no longer pass as one rate.
    assert fuse({"a": 8.1, "b": 11.4, "c": None}, 3.0) == (None, True)


def test_fuse_needs_two_sources() -> None:
    assert fuse({"a": 15.0, "b": None, "c": None}, 3.0) == (None, False)
