"""Resampling onto the uniform grid, filters and camera RGB → pulse."""

from __future__ import annotations

import numpy as np
import pytest
from resonance_worker.domain.biometrics.beats import detect_beats
from resonance_worker.domain.biometrics.dsp import (
    band_concentration,
    bandpass,
    chrom,
    finger_pulse,
    pos,
    uniform_grid,
)

from bench.biometrics import synthetic


def test_uniform_grid_interpolates_linearly_on_absolute_multiples() -> None:
    times = np.array([0.0, 0.1, 0.3, 0.4])
    values = np.array([[0.0], [1.0], [3.0], [4.0]])  # v = 10·t
    grid_t, grid_v, missing = uniform_grid(times, values, 0.01, 0.4, 10.0)
    assert grid_t.tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert grid_v[:, 0].tolist() == pytest.approx([1.0, 2.0, 3.0, 4.0])
    assert missing == 0.0


def test_uniform_grid_counts_holes_and_skips_missing_rows() -> None:
    times = np.arange(0.0, 3.0, 0.1)
    values = np.ones((times.size, 1))
    values[10:20] = np.nan  # one second missing in the middle
    _, grid_v, missing = uniform_grid(times, values, 0.0, 2.9, 10.0)
    assert np.isfinite(grid_v).all()
    assert missing == pytest.approx(10 / 30)


def test_uniform_grid_with_no_data_is_all_missing() -> None:
    grid_t, grid_v, missing = uniform_grid(np.array([1.0]), np.array([[1.0]]), 0.0, 1.0, 10.0)
    assert grid_t.size == 11 and np.isnan(grid_v).all() and missing == 1.0


def test_bandpass_keeps_the_pulse_and_drops_drift_and_flicker() -> None:
    t = np.arange(0, 20, 1 / 30)
    pulse = np.sin(2 * np.pi * 1.2 * t)
    drift = 5 * np.sin(2 * np.pi * 0.05 * t)
    flicker = np.sin(2 * np.pi * 10 * t)
    out = bandpass(pulse + drift + flicker, 30.0, 0.5, 4.0)
    middle = slice(90, -90)
    assert np.corrcoef(out[middle], pulse[middle])[0, 1] > 0.98
    assert np.std(out[middle] - pulse[middle]) < 0.2


def test_band_concentration_separates_a_pulse_from_noise() -> None:
    t = np.arange(0, 10, 1 / 30)
    assert band_concentration(np.sin(2 * np.pi * 1.2 * t), 30.0) > 0.8
    noise = np.random.default_rng(0).standard_normal(t.size)
    assert band_concentration(noise, 30.0) < 0.3
    assert band_concentration(np.zeros(300), 30.0) == 0.0
    assert band_concentration(np.ones(4), 30.0) == 0.0


@pytest.mark.parametrize("method", [pos, chrom])
@pytest.mark.parametrize("moving", [False, True])
def test_face_methods_recover_the_pulse_rate(method: object, moving: bool) -> None:
    t = np.arange(0, 20, 1 / 30)
    beats = synthetic.beat_times(20, hr_bpm=80.0, variability_ms=0.0, rsa_ms=0.0)
    truth = synthetic.pulse_at(t, beats)
    motion = synthetic.band_noise(t, low=0.8, high=2.5) if moving else None
    rgb = synthetic.face_rgb(t, truth, motion=motion)
    pulse = method(rgb, 30.0)  # type: ignore[operator]
    found = detect_beats(pulse, 30.0, 0.0)
    assert found.period_s == pytest.approx(0.75, abs=0.03)
    # Systolic peak up: the pulse correlates positively with the truth.
    assert np.corrcoef(bandpass(pulse, 30.0, 0.5, 4.0), truth)[0, 1] > 0.5


def pos_by_definition(rgb: np.ndarray, length: int) -> np.ndarray:
    """POS as Wang et al. write it: window by window, normalise, project, tune, overlap-add."""
    out = np.zeros(rgb.shape[0])
    for start in range(rgb.shape[0] - length + 1):
        window = rgb[start : start + length]
        normalised = window / window.mean(axis=0)
        s1 = normalised[:, 1] - normalised[:, 2]
        s2 = -2 * normalised[:, 0] + normalised[:, 1] + normalised[:, 2]
        pulse = s1 + (s1.std() / s2.std()) * s2
        out[start : start + length] += pulse - pulse.mean()
    return -out


@pytest.mark.parametrize("seed", [0, 1])
def test_pos_by_moving_sums_equals_the_window_by_window_definition(seed: int) -> None:
    t = np.arange(0, 8, 1 / 30)
    beats = synthetic.beat_times(10, seed=seed)
    rgb = synthetic.face_scene(
        t, synthetic.pulse_at(t, beats), motion=synthetic.band_noise(t, seed=seed), flicker_hz=1.4, seed=seed
    )
    assert pos(rgb, 30.0) == pytest.approx(pos_by_definition(rgb, 48), abs=1e-10)


def test_pos_on_too_few_frames_is_flat() -> None:
    assert not pos(np.ones((10, 3)), 30.0).any()


def test_finger_pulse_takes_the_cleanest_inverted_channel() -> None:
    t = np.arange(0, 10, 1 / 30)
    beat = np.sin(2 * np.pi * 1.2 * t)
    rng = np.random.default_rng(1)
    rgb = np.column_stack(
        [
            255.0 + 0 * t,  # clipped red carries nothing
            60.0 - 1.0 * beat + rng.normal(0, 0.05, t.size),  # green dips at each beat
            0.0 * t,  # dark blue
        ]
    )
    pulse = finger_pulse(rgb, 30.0)
    assert np.corrcoef(pulse, beat)[0, 1] > 0.95
    assert not finger_pulse(np.zeros((300, 3)), 30.0).any()
