"""Beat detection at 30 Hz: sub-sample timing, period, morphology."""

from __future__ import annotations

import numpy as np
import pytest
from resonance_worker.domain.biometrics.beats import _parabolic_offset, detect_beats, dominant_period
from resonance_worker.domain.biometrics.dsp import bandpass

from bench.biometrics import synthetic
from bench.biometrics.metrics import beat_f1


def test_parabola_vertex_worked_example() -> None:
    # y = -(x - 0.3)² sampled at -1, 0, 1 → vertex at +0.3.
    before, centre, after = -(1.3**2), -(0.3**2), -(0.7**2)
    offset = _parabolic_offset(np.array([before]), np.array([centre]), np.array([after]))
    assert offset[0] == pytest.approx(0.3)
    flat = _parabolic_offset(np.array([1.0]), np.array([1.0]), np.array([1.0]))
    assert flat[0] == 0.0


def test_dominant_period_of_a_pulse_train() -> None:
    t = np.arange(0, 10, 1 / 30)
    x = np.sin(2 * np.pi * 1.25 * t) + 0.4 * np.sin(2 * np.pi * 2.5 * t + 0.6)
    period, height = dominant_period(bandpass(x, 30.0, 0.5, 4.0), 30.0)
    assert period == pytest.approx(0.8, abs=0.01)
    assert height > 0.8
    assert dominant_period(np.zeros(300), 30.0) == (None, 0.0)
    assert dominant_period(np.ones(10), 30.0)[0] is None


def test_dominant_period_prefers_the_beat_over_a_double_beat() -> None:
    t = np.arange(0, 10, 1 / 30)
    # Alternating beat sizes give a strong two-beat lag; the single beat must still win.
    x = np.sin(2 * np.pi * 1.5 * t) * (1.0 + 0.3 * np.sign(np.sin(np.pi * 1.5 * t)))
    period, _ = dominant_period(bandpass(x, 30.0, 0.5, 4.0), 30.0)
    assert period == pytest.approx(1 / 1.5, abs=0.03)


def test_beats_of_a_clean_30hz_pulse_are_all_found_with_sub_sample_timing() -> None:
    beats = synthetic.beat_times(60, hr_bpm=75)
    t = np.arange(0, 60, 1 / 30)
    found = detect_beats(synthetic.pulse_at(t, beats), 30.0, 0.0)
    truth = beats[beats < 59.7]
    assert beat_f1(truth, found.times) == 1.0
    # The fiducial trails the onset by a constant: interval errors are a few ms, well
    # under the 33 ms sample period.
    matched = np.array([found.times[np.argmin(np.abs(found.times - b - 0.1))] for b in truth])
    interval_error = np.diff(matched) - np.diff(truth)
    assert np.sqrt(np.mean(interval_error**2)) < 0.004
    assert np.nanmin(found.morphology) > 0.95
    assert found.periodicity > 0.7
    assert (found.amplitudes > 0).all()


def test_a_corrupted_beat_has_low_morphology() -> None:
    beats = synthetic.beat_times(12, hr_bpm=70, variability_ms=0.0, rsa_ms=0.0)
    t = np.arange(0, 12, 1 / 30)
    x = synthetic.pulse_at(t, beats)
    spike = (t > 5.0) & (t < 5.6)
    x[spike] += 1.5 * np.sin(2 * np.pi * 3.0 * t[spike])
    found = detect_beats(x, 30.0, 0.0)
    near = np.abs(found.times - 5.3) < 0.6
    assert near.any()
    assert np.nanmin(found.morphology[near]) < 0.8
    assert np.nanmedian(found.morphology[~near]) > 0.9


def test_flat_or_short_input_gives_no_beats() -> None:
    assert detect_beats(np.zeros(300), 30.0, 0.0).times.size == 0
    assert detect_beats(np.ones(30), 30.0, 0.0).times.size == 0
    noise = np.random.default_rng(0).standard_normal(300) * 1e-3
    found = detect_beats(noise, 30.0, 5.0)
    assert (found.times >= 5.0).all()


def test_beats_of_alternating_size_are_all_counted() -> None:
    # 125 bpm with every third beat larger (as on the vitalDSP oximeter): the autocorrelation's
    # highest peak spans three beats, and neither the period nor the beats may follow it.
    t = np.arange(0, 10, 1 / 30)
    onsets = np.arange(0.2, 10.5, 0.48)
    x = np.zeros(t.size)
    for i, onset in enumerate(onsets):
        size = 1.6 if i % 3 == 0 else 0.6
        x += size * np.exp(-(((t - onset - 0.12) / 0.06) ** 2))
    found = detect_beats(x, 30.0, 0.0)
    assert found.period_s == pytest.approx(0.48, abs=0.02)
    intervals = np.diff(found.times)
    assert intervals == pytest.approx(np.full(intervals.size, 0.48), abs=0.04)
    assert found.times.size >= 19
