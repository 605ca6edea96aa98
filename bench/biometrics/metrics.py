"""Benchmark metrics: beat matching (±150 ms after the best constant lag) and error summaries."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def beat_f1(reference_s: FloatArray, detected_s: FloatArray, tolerance_s: float = 0.15) -> float:
    """F1 of one-to-one matches within ±tolerance, after the constant lag (−0.2..0.8 s) that
    matches most beats — PPG beats trail the ECG R wave by the pulse transit time."""
    if detected_s.size == 0 or reference_s.size == 0:
        return 0.0
    best_lag, best_count = 0.0, -1
    for lag in np.arange(-0.2, 0.8, 0.005):
        nearest = np.min(np.abs(detected_s[None, :] - (reference_s[:, None] + lag)), axis=1)
        count = int((nearest < tolerance_s).sum())
        if count > best_count:
            best_lag, best_count = float(lag), count
    used = np.zeros(detected_s.size, dtype=bool)
    hits = 0
    for ref in reference_s + best_lag:
        distance = np.abs(detected_s - ref) + used * 1e9
        i = int(np.argmin(distance))
        if distance[i] < tolerance_s:
            used[i] = True
            hits += 1
    sensitivity = hits / reference_s.size
    precision = hits / detected_s.size
    return 0.0 if hits == 0 else 2 * sensitivity * precision / (sensitivity + precision)


def summarise_hr(
    errors: list[float], windows: int, update_ms: list[float], update_cpu_ms: list[float]
) -> dict[str, float | None]:
    e = np.abs(np.asarray(errors, dtype=np.float64))
    return {
        "windows": windows,
        "coverage": round(e.size / windows, 4) if windows else None,
        "hr_mae_bpm": round(float(e.mean()), 3) if e.size else None,
        "hr_within_5bpm": round(float(np.mean(e <= 5.0)), 4) if e.size else None,
        "p95_update_ms": round(float(np.percentile(update_ms, 95)), 3) if update_ms else None,
        "p50_update_ms": round(float(np.percentile(update_ms, 50)), 3) if update_ms else None,
        "p95_update_cpu_ms": round(float(np.percentile(update_cpu_ms, 95)), 3) if update_cpu_ms else None,
    }


def summarise_rmssd(errors: list[float], windows: int) -> dict[str, float | None]:
    e = np.asarray(errors, dtype=np.float64)
    return {
        "rmssd_windows": windows,
        "rmssd_coverage": round(e.size / windows, 4) if windows else None,
        "rmssd_error_ms": round(float(np.mean(np.abs(e))), 3) if e.size else None,
        "rmssd_bias_ms": round(float(np.mean(e)), 3) if e.size else None,
    }
