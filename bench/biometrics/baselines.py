"""HeartPy and NeuroKit2 used the way their documentation shows, on one uniformly sampled window."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
Detector = Callable[[FloatArray, float], FloatArray]
"""(window, rate) -> beat times in seconds from the window start; raises when it gives up."""


def heartpy_beats(x: FloatArray, rate_hz: float) -> FloatArray:
    import heartpy as hp

    filtered = hp.filter_signal(x, [0.7, 3.5], sample_rate=rate_hz, order=3, filtertype="bandpass")
    working, _ = hp.process(filtered, rate_hz, high_precision=True, high_precision_fs=1000.0)
    peaks = np.asarray(working["peaklist"], dtype=np.float64)
    accepted = np.asarray(working["binary_peaklist"]) == 1
    return peaks[accepted] / rate_hz


def _neurokit(method: str) -> Detector:
    def detect(x: FloatArray, rate_hz: float) -> FloatArray:
        import neurokit2 as nk

        # MSPTD variants need an integer rate (a float raises TypeError in NK2 0.2.13).
        rate = round(rate_hz)
        cleaned = nk.ppg_clean(x, sampling_rate=rate, method="elgendi")
        peaks = nk.ppg_findpeaks(cleaned, sampling_rate=rate, method=method)["PPG_Peaks"]
        return np.asarray(peaks, dtype=np.float64) / rate_hz

    return detect


def neurokit_sqi_gated_beats(x: FloatArray, rate_hz: float, threshold: float = 0.9) -> FloatArray:
    """NK2 Elgendi beats, keeping only beats whose template-match quality is ≥ threshold."""
    import neurokit2 as nk

    rate = round(rate_hz)
    cleaned = nk.ppg_clean(x, sampling_rate=rate, method="elgendi")
    peaks = np.asarray(nk.ppg_findpeaks(cleaned, sampling_rate=rate, method="elgendi")["PPG_Peaks"])
    if peaks.size < 3:
        return np.empty(0)
    quality = np.asarray(nk.ppg_quality(cleaned, peaks=peaks, sampling_rate=rate, method="templatematch"))[
        peaks
    ]
    return peaks[quality >= threshold].astype(np.float64) / rate_hz


DETECTORS: dict[str, Detector] = {
    "heartpy": heartpy_beats,
    "nk_elgendi": _neurokit("elgendi"),
    "nk_msptd": _neurokit("bishop"),
}


def hr_from_beats(beats_s: FloatArray, *, gated: bool = False) -> float:
    """The benchmark's rate for a baseline: 60 / median plausible interval (NaN if < 3).

    With ``gated`` (SQI-filtered beats) an interval only counts between adjacent kept
    beats, and the window is rejected when under 60 % of its span is covered.
    """
    intervals = np.diff(beats_s)
    plausible = intervals[(intervals > 0.27) & (intervals < 1.7)]
    if gated and plausible.size:
        median = float(np.median(plausible))
        plausible = plausible[np.abs(plausible - median) < 0.3 * median]
        if plausible.sum() < 0.6 * 10.0:
            return float("nan")
    if plausible.size < 3:
        return float("nan")
    return 60.0 / float(np.median(plausible))


def rmssd_from_beats(beats_s: FloatArray) -> float:
    """RMSSD after dropping intervals more than 30 % from the median (the research notes' cleaning)."""
    intervals = np.diff(beats_s) * 1000.0
    intervals = intervals[(intervals > 300) & (intervals < 2000)]
    if intervals.size < 3:
        return float("nan")
    median = float(np.median(intervals))
    ok = np.abs(intervals - median) < 0.3 * median
    diffs = np.diff(intervals)[ok[1:] & ok[:-1]]
    return float(np.sqrt(np.mean(diffs**2))) if diffs.size >= 10 else float("nan")


def run_quietly(detector: Detector, x: FloatArray, rate_hz: float) -> FloatArray | None:
    """Beats, or None when the library raised (HeartPy does on flat or short windows)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return detector(x, rate_hz)
        except Exception:
            return None


BreathingEstimator = Callable[[FloatArray, float], float]
"""(window, rate) -> breaths per minute; raises or returns NaN when it gives up."""


def heartpy_breathing(x: FloatArray, rate_hz: float) -> float:
    """HeartPy's ``breathingrate``: the spectral peak of its beat-interval series (RIFV), in Hz."""
    import heartpy as hp

    filtered = hp.filter_signal(x, [0.7, 3.5], sample_rate=rate_hz, order=3, filtertype="bandpass")
    _, measures = hp.process(filtered, rate_hz, high_precision=True, high_precision_fs=1000.0)
    return 60.0 * float(measures["breathingrate"])


def neurokit_breathing(x: FloatArray, rate_hz: float) -> float:
    """NeuroKit2 has no PPG-derived respiration, so its rate-derived one (``ecg_rsp``, Charlton 2016
    filter) on the Elgendi pulse rate, then ``rsp_peaks`` breath counting: the mean breath rate."""
    import neurokit2 as nk

    rate = round(rate_hz)
    cleaned = nk.ppg_clean(x, sampling_rate=rate, method="elgendi")
    peaks = nk.ppg_findpeaks(cleaned, sampling_rate=rate, method="elgendi")["PPG_Peaks"]
    pulse_rate = nk.signal_rate(peaks, sampling_rate=rate, desired_length=x.size)
    derived = nk.ecg_rsp(pulse_rate, sampling_rate=rate, method="charlton2016")
    _, info = nk.rsp_peaks(derived, sampling_rate=rate)
    breaths = np.asarray(info["RSP_Peaks"], dtype=np.float64) / rate_hz
    if breaths.size < 3:
        return float("nan")
    return float(60.0 * (breaths.size - 1) / (breaths[-1] - breaths[0]))


BREATHING: dict[str, BreathingEstimator] = {
    "heartpy_rifv": heartpy_breathing,
    "nk_rate_derived": neurokit_breathing,
}


def run_breathing_quietly(estimator: BreathingEstimator, x: FloatArray, rate_hz: float) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return estimator(x, rate_hz)
        except Exception:
            return float("nan")
