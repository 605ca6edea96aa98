"""Recordings that ship inside PyPI packages (installed with the ``dev`` extra, never copied here).

* pyphysio 4.10 ``test_data/medical.txt.bz2`` (GPL): ECG, EDA, finger PPG, respiration belt; 2048 Hz, 120 s.
* vitalDSP 0.2.5 ``notebooks/ppg.csv`` (MIT): pulse-oximeter pleth at 100 Hz with the device's HR per second.
* HeartPy 1.2.7 ``data/data*.csv``: three PPG recordings (no reference; HeartPy's documented outputs).
* pyhrv 0.5.0 ``files/SampleNNISeriesLong.npy`` + ``SampleReport.txt`` (BSD-3): NN intervals and their HRV.
"""

from __future__ import annotations

import bz2
import importlib.util
import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy import signal

FloatArray = npt.NDArray[np.float64]


def package_dir(name: str) -> Path:
    """Where an installed package lives, without importing it (some of them import slowly)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {name!r} is not installed: uv sync --all-extras")
    return Path(next(iter(spec.submodule_search_locations)))


def resample(x: FloatArray, rate_in: float, rate_out: float) -> FloatArray:
    ratio = Fraction(rate_out / rate_in).limit_denominator(2000)
    out: FloatArray = signal.resample_poly(x, ratio.numerator, ratio.denominator)
    return out


@dataclass(frozen=True)
class PpgWithEcg:
    ppg: FloatArray
    ppg_rate_hz: float
    r_peaks_s: FloatArray
    """R-wave times from the simultaneous ECG (the reference beats)."""
    breathing_bpm: float
    """From the respiration belt: 60 / mean breath interval over the whole record."""
    breath_times_s: FloatArray
    """Breath peaks on the respiration belt (the reference breaths)."""

    def belt_rate_bpm(self, start: float, end: float) -> float:
        """Breaths per minute on the belt between ``start`` and ``end``: the breaths in the window
        over the time they span (NaN with fewer than three)."""
        inside = self.breath_times_s[(self.breath_times_s >= start) & (self.breath_times_s <= end)]
        if inside.size < 3:
            return float("nan")
        return float(60.0 * (inside.size - 1) / (inside[-1] - inside[0]))


def r_peaks(ecg: FloatArray, rate_hz: float) -> FloatArray:
    """R waves: band-pass 5–25 Hz, squared slope, peaks ≥ 0.3 s apart, refined to the raw maximum."""
    sos = signal.butter(3, [5.0, 25.0], btype="band", fs=rate_hz, output="sos")
    filtered = signal.sosfiltfilt(sos, ecg)
    energy = np.gradient(filtered) ** 2
    energy = np.convolve(energy, np.ones(int(0.08 * rate_hz)) / int(0.08 * rate_hz), mode="same")
    peaks, _ = signal.find_peaks(energy, distance=int(0.3 * rate_hz), height=0.3 * np.percentile(energy, 99))
    half = int(0.05 * rate_hz)
    refined = [p - half + int(np.argmax(np.abs(filtered[max(0, p - half) : p + half]))) for p in peaks]
    return np.asarray(refined, dtype=np.float64) / rate_hz


def belt_breaths(belt: FloatArray, rate_hz: float) -> FloatArray:
    """Breath peaks on a respiration belt: band-pass 0.1–0.7 Hz (6–42 /min), peaks ≥ 1.2 s apart
    standing out by 0.3 SD. The first second (a recorder start-up spike) and the last half second
    are left out: the spike alone owned the belt's spectrum below 10 /min."""
    t = np.arange(belt.size) / rate_hz
    keep = (t > 1.0) & (t < t[-1] - 0.5)
    sos = signal.butter(2, [0.1, 0.7], btype="band", fs=rate_hz, output="sos")
    filtered = signal.sosfiltfilt(sos, belt[keep])
    peaks, _ = signal.find_peaks(filtered, distance=int(1.2 * rate_hz), prominence=0.3 * np.std(filtered))
    breaths: FloatArray = t[keep][peaks]
    return breaths


def pyphysio_medical(rate_hz: float = 30.0) -> PpgWithEcg:
    path = package_dir("pyphysio") / "test_data" / "medical.txt.bz2"
    with bz2.open(path, "rt") as handle:
        table = np.loadtxt(handle, delimiter="\t")
    native = 2048.0  # 245 760 rows over the 120 s the package describes
    ecg, _eda, bvp, belt = table.T
    beats = r_peaks(ecg, native)
    beats = beats[(beats > 0.5) & (beats < table.shape[0] / native - 0.5)]
    breaths = belt_breaths(resample(belt, native, 32.0), 32.0)
    breathing = 60.0 / float(np.mean(np.diff(breaths)))
    return PpgWithEcg(resample(bvp, native, rate_hz), rate_hz, beats, breathing, breaths)


@dataclass(frozen=True)
class PpgWithDeviceHr:
    ppg: FloatArray
    ppg_rate_hz: float
    device_hr: FloatArray
    """Device HR per second (NaN where the device reported none)."""


def vitaldsp_oximeter(rate_hz: float = 30.0) -> PpgWithDeviceHr:
    import csv

    path = package_dir("vitalDSP") / "notebooks" / "ppg.csv"
    pleth: list[float] = []
    device: list[float] = []
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            pleth.extend(json.loads(row["pleth"]))
            hr = float(row["hr"])
            device.append(np.nan if hr >= 255 else hr)
    return PpgWithDeviceHr(resample(np.asarray(pleth, float), 100.0, rate_hz), rate_hz, np.asarray(device))


@dataclass(frozen=True)
class HeartPyRecording:
    name: str
    ppg: FloatArray
    rate_hz: float
    documented: dict[str, float]
    """HeartPy's own outputs from its example notebook (bpm, rmssd, sdnn)."""


HEARTPY_DOCUMENTED = {
    "data.csv": {"bpm": 58.90, "rmssd": 64.74, "sdnn": 65.76},
    "data2.csv": {"bpm": 62.38, "rmssd": 57.07, "sdnn": 64.61},
    "data3.csv": {"bpm": 97.33, "rmssd": 38.18, "sdnn": 57.92},
}


def heartpy_recordings() -> list[HeartPyRecording]:
    from datetime import datetime

    folder = package_dir("heartpy") / "data"
    out = [
        HeartPyRecording("data.csv", np.loadtxt(folder / "data.csv"), 100.0, HEARTPY_DOCUMENTED["data.csv"])
    ]
    table = np.loadtxt(folder / "data2.csv", delimiter=",", skiprows=1)
    rate = 1000.0 / float(np.mean(np.diff(table[:, 0])))
    out.append(HeartPyRecording("data2.csv", table[:, 1], rate, HEARTPY_DOCUMENTED["data2.csv"]))
    lines = (folder / "data3.csv").read_text().splitlines()[1:]
    stamps = [datetime.fromisoformat(line.split(",")[0]).timestamp() for line in lines]
    values = np.asarray([float(line.split(",")[1]) for line in lines])
    rate = 1.0 / float(np.mean(np.diff(stamps)))
    out.append(HeartPyRecording("data3.csv", values, rate, HEARTPY_DOCUMENTED["data3.csv"]))
    return out


def pyhrv_sample() -> tuple[FloatArray, dict[str, float]]:
    """pyhrv's long NN series (ms) and the time-domain values in its sample report."""
    folder = package_dir("pyhrv") / "files"
    nn = np.load(folder / "SampleNNISeriesLong.npy").astype(np.float64)
    wanted = {"RMSSD (ms)": "rmssd", "SDNN (ms)": "sdnn", "pNN50 (%)": "pnn50", "Mean NNI (ms)": "mean_nn"}
    report: dict[str, float] = {}
    for line in (folder / "SampleReport.txt").read_text().splitlines():
        label, _, value = line.partition(";")
        if label.strip() in wanted:
            report[wanted[label.strip()]] = float(value)
    return nn, report
