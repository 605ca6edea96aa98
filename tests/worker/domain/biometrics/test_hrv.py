"""HRV formulas (worked examples) and the clean-interval rules."""

from __future__ import annotations

import math

import numpy as np
import pytest
from resonance_worker.domain.biometrics import hrv


def intervals_of(times: list[float], ok: list[bool] | None = None) -> hrv.Intervals:
    beats = np.asarray(times)
    return hrv.select_intervals(beats, np.asarray(ok if ok is not None else [True] * beats.size))


def test_worked_example_rmssd_sdnn_pnn50() -> None:
    nn = np.array([800.0, 810.0, 790.0, 860.0, 850.0])
    diffs = np.diff(nn)  # 10, -20, 70, -10
    assert hrv.rmssd_ms(diffs) == pytest.approx(math.sqrt((100 + 400 + 4900 + 100) / 4))
    assert hrv.sdnn_ms(nn) == pytest.approx(float(np.std(nn, ddof=1)))
    # pNN50: one difference of four exceeds 50 ms — the denominator is differences, not intervals.
    assert hrv.pnn50_pct(diffs) == pytest.approx(25.0)
    assert hrv.mean_hr_bpm(nn / 1000.0) == pytest.approx(float(np.mean(60000.0 / nn)))


def test_empty_inputs_give_none() -> None:
    empty = np.empty(0)
    assert hrv.rmssd_ms(empty) is None
    assert hrv.pnn50_pct(empty) is None
    assert hrv.sdnn_ms(np.array([800.0])) is None
    assert hrv.mean_hr_bpm(empty) is None
    assert intervals_of([1.0]).seconds.size == 0


def test_a_missed_beat_and_an_extra_beat_are_not_clean() -> None:
    beats = [0.0, 0.8, 1.6, 2.4, 4.0, 4.8, 5.6, 5.9, 6.4, 7.2, 8.0]
    intervals = intervals_of(beats)
    # 2.4→4.0 spans two beats; 5.6→5.9→6.4 splits one; everything else is clean.
    assert intervals.clean.tolist() == [True, True, True, False, True, True, False, False, True, True]
    assert intervals.clean_span() == pytest.approx(0.8 * 7)
    # Only adjacent clean intervals give successive differences.
    assert hrv.successive_differences_ms(intervals).size == 4


def test_intervals_touching_a_bad_beat_are_not_clean() -> None:
    intervals = intervals_of([0.0, 0.8, 1.6, 2.4, 3.2], ok=[True, True, False, True, True])
    assert intervals.clean.tolist() == [True, False, False, True]


def test_implausible_intervals_are_never_clean() -> None:
    intervals = intervals_of([0.0, 0.2, 2.5, 3.3])  # 300 bpm, 26 bpm
    assert not intervals.clean[:2].any()
    none_plausible = intervals_of([0.0, 0.1, 0.2])
    assert not none_plausible.clean.any()
