"""Real recordings shipped inside PyPI packages (the ``dev`` extra), streamed through the core.

These pin today's accuracy so a regression fails ``make test``. The data is read from
the installed packages, never copied into this repository. References:

* pyphysio ``medical``: finger PPG with a simultaneous ECG (R waves are the truth) and a
  respiration belt (its breaths are the breathing truth);
* HeartPy's bundled recordings: no reference — HeartPy's documented outputs, for agreement;
* pyhrv's NN-interval sample: the HRV values in its own sample report.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from resonance_worker.domain.biometrics import (
    BiometricStream,
    BreathingReading,
    HeartRateReading,
    HrvReading,
    Reading,
    StreamConfig,
    hrv,
)

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(name) is None for name in ("pyphysio", "heartpy", "pyhrv")),
    reason="the recordings come with the dev extra: uv sync --all-extras",
)


def stream_all(stream: BiometricStream, t: np.ndarray, values: np.ndarray) -> list[Reading]:
    out: list[Reading] = []
    seconds = np.floor(t).astype(int)
    for chunk in np.split(np.arange(t.size), np.flatnonzero(np.diff(seconds)) + 1):
        out += stream.push_ppg(t[chunk], values[chunk])
    return out


@pytest.fixture(scope="module")
def finger_with_ecg() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from bench.biometrics import data

    record = data.pyphysio_medical(30.0)
    return np.arange(record.ppg.size) / 30.0, record.ppg, record.r_peaks_s


def ecg_hr(beats: np.ndarray, start: float, end: float) -> float:
    ends = beats[1:]
    inside = (ends >= start) & (ends < end)
    return float(np.mean(60.0 / np.diff(beats)[inside]))


def test_pyphysio_heart_rate_at_30hz_against_the_ecg(
    finger_with_ecg: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    t, ppg, beats = finger_with_ecg
    for config, max_mae, min_coverage in (
        (StreamConfig(quality_threshold=0.0), 0.9, 1.0),
        (StreamConfig(), 0.6, 0.8),
    ):
        readings = [r for r in stream_all(BiometricStream(config), t, ppg) if isinstance(r, HeartRateReading)]
        full = [r for r in readings if r.window_s >= 10.0 - 1e-6]
        errors = [abs(r.bpm - ecg_hr(beats, r.t - 10, r.t)) for r in full if r.bpm is not None]
        assert len(full) >= 105
        assert len(errors) / len(full) >= min_coverage
        assert float(np.mean(errors)) <= max_mae  # measured 0.65 ungated, 0.42 gated (84 % of windows)


def test_pyphysio_gated_rmssd_against_the_ecg(
    finger_with_ecg: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    t, ppg, beats = finger_with_ecg
    hrv_readings = [r for r in stream_all(BiometricStream(), t, ppg) if isinstance(r, HrvReading)]
    emitted = [r for r in hrv_readings if r.rmssd_ms is not None]
    assert len(emitted) >= 6  # measured 8 of 12 windows; the rest hold the recording's motion artefact
    errors = []
    for reading in emitted:
        ecg = beats[(beats >= reading.t - 60) & (beats <= reading.t)]
        errors.append(abs(reading.rmssd_ms - float(np.sqrt(np.mean(np.diff(np.diff(ecg) * 1000.0) ** 2)))))
    assert max(errors) <= 5.0 and float(np.mean(errors)) <= 3.0  # measured: max 2.7 ms, mean 1.7 ms


@pytest.mark.parametrize(
    ("name", "bpm", "rmssd"),
    [("data.csv", 58.6, None), ("data2.csv", 62.0, 60.7), ("data3.csv", 97.0, 22.9)],
)
def test_heartpy_recordings_stay_where_they_are(name: str, bpm: float, rmssd: float | None) -> None:
    from bench.biometrics import data

    recording = next(r for r in data.heartpy_recordings() if r.name == name)
    t = np.arange(recording.ppg.size) / recording.rate_hz
    readings = stream_all(BiometricStream(), t, recording.ppg)
    rates = [r.bpm for r in readings if isinstance(r, HeartRateReading) and r.bpm is not None]
    # Agreement with HeartPy's documented whole-record rate (no independent reference here).
    assert float(np.median(rates)) == pytest.approx(recording.documented["bpm"], abs=1.0)
    assert float(np.median(rates)) == pytest.approx(bpm, abs=0.5)
    rmssds = [r.rmssd_ms for r in readings if isinstance(r, HrvReading) and r.rmssd_ms is not None]
    if rmssd is None:
        assert rmssds == []  # 25 s: too short for HRV
    else:
        assert float(np.median(rmssds)) == pytest.approx(rmssd, abs=3.0)


def test_hrv_formulas_match_the_pyhrv_sample_report() -> None:
    from bench.biometrics import data

    nn, report = data.pyhrv_sample()
    differences = np.diff(nn)
    assert hrv.rmssd_ms(differences) == pytest.approx(report["rmssd"], abs=1e-3)
    assert hrv.sdnn_ms(nn) == pytest.approx(report["sdnn"], abs=1e-3)
    assert hrv.pnn50_pct(differences) == pytest.approx(report["pnn50"], abs=1e-3)
    assert float(np.mean(nn)) == pytest.approx(report["mean_nn"], abs=1e-3)


def test_pyphysio_breathing_is_near_the_belt_or_honestly_absent() -> None:
    """The belt's breaths counted in each of our windows are the reference. The recording breathes
    regularly (≈ 19–20 /min) for its first minute, then irregularly with sighs: there the pulse's
    modulations disagree and the stream must say so rather than report a rate."""
    from bench.biometrics import data

    record = data.pyphysio_medical(30.0)
    t = np.arange(record.ppg.size) / 30.0
    readings = [r for r in stream_all(BiometricStream(), t, record.ppg) if isinstance(r, BreathingReading)]
    assert len(readings) == 18
    errors = [
        abs(r.rate_bpm - record.belt_rate_bpm(r.t - r.window_s, r.t))
        for r in readings
        if r.rate_bpm is not None
    ]
    assert len(errors) >= 4  # measured: 5 of 18 windows (7 when re-analysing each whole window)
    assert max(errors) <= 1.5 and float(np.mean(errors)) <= 0.8  # measured: max 0.44, mean 0.26 /min
    absent = [r for r in readings if r.rate_bpm is None]
    assert len(absent) == 18 - len(errors)
    assert all(r.reason == "modulations_disagree" for r in absent)  # measured: 13 windows
