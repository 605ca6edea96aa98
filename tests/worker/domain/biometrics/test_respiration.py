"""Breathing rate from one modulation, and the agreement rule that fuses them."""

from __future__ import annotations

import numpy as np
import pytest
from resonance_worker.domain.biometrics.respiration import fuse, spectral_rate


def test_spectral_rate_of_an_irregularly_sampled_breathing_series() -> None:
    rng = np.random.default_rng(0)
    beats = np.cumsum(rng.uniform(0.7, 0.9, 80))  # about 60 s of beats
    values = np.sin(2 * np.pi * (12.0 / 60.0) * beats) + 0.01 * beats  # 12 /min plus drift
    assert spectral_rate(beats, values) == pytest.approx(12.0, abs=0.5)


def test_spectral_rate_refuses_short_flat_or_shapeless_series() -> None:
    t = np.linspace(0, 10, 12)
    assert spectral_rate(t, np.sin(t)) is None  # under 20 s
    long = np.linspace(0, 60, 70)
    assert spectral_rate(long, np.ones(70)) is None
    noise = np.random.default_rng(3).standard_normal(70)
    assert spectral_rate(long, noise) is None or True  # noise may or may not peak; must not raise
    nan_heavy = np.full(70, np.nan)
    nan_heavy[:3] = 1.0
    assert spectral_rate(long, nan_heavy) is None


def test_broadband_noise_has_no_dominant_rhythm() -> None:
    t = np.arange(0, 60, 0.25)
    # Equal power at many frequencies: no peak holds a fifth of the band.
    values = sum(np.sin(2 * np.pi * f * t + f * 7) for f in np.arange(0.1, 0.7, 0.02))
    assert spectral_rate(t, values) is None


def test_fuse_averages_agreeing_sources() -> None:
    assert fuse({"a": 14.0, "b": 15.0, "c": 16.0}, 4.0) == (15.0, False)


def test_fuse_keeps_two_of_three_when_one_is_an_outlier() -> None:
    assert fuse({"a": 14.0, "b": 14.5, "c": 25.0}, 4.0) == (14.25, False)


def test_fuse_gives_no_estimate_when_sources_disagree() -> None:
    assert fuse({"a": 8.0, "b": 14.0, "c": 25.0}, 4.0) == (None, True)
    assert fuse({"a": 8.0, "b": 20.0, "c": None}, 4.0) == (None, True)


def test_fuse_needs_two_sources() -> None:
    assert fuse({"a": 15.0, "b": None, "c": None}, 4.0) == (None, False)
