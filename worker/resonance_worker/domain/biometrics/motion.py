"""Accelerometer (and gyroscope) activity: how much the phone moves, per second and as a label.

Activity is the spread of the acceleration vector within each 1 s bin (m/s²):
the root of the summed per-axis variances. Gravity is constant on each axis over
a second (unless the phone turns, which the gyroscope catches), so only movement
remains — in any direction, unlike the spread of |a|. Gyroscope motion
(mean |ω|, rad/s) adds to it with a weight of 1 m/s² per rad/s, because a
rotating hand shifts the finger on the lens even when |a| barely changes.
"""

from __future__ import annotations

import numpy as np

from resonance_worker.domain.biometrics.buffer import FloatArray, SampleBuffer
from resonance_worker.domain.biometrics.readings import Activity

GYRO_WEIGHT = 1.0
# Label thresholds (m/s²): a resting hand ≈ 0.05, typing/gesturing ≈ 0.3, walking ≈ 1–3.
_LABELS: tuple[tuple[float, Activity], ...] = ((0.15, "still"), (0.8, "light"), (3.0, "moving"))


def activity_label(level: float | None) -> Activity:
    if level is None:
        return "unknown"
    for limit, label in _LABELS:
        if level < limit:
            return label
    return "vigorous"


def motion_per_second(
    accel: SampleBuffer, gyro: SampleBuffer, start: float, end: float
) -> tuple[FloatArray, FloatArray] | None:
    """Activity level of each whole second in [start, end): (bin starts, levels), or None without data."""
    times, values = accel.window(start, end)
    valid = np.isfinite(values).all(axis=1)
    times, values = times[valid], values[valid]
    if times.size < 4:
        return None
    edges = np.arange(np.floor(start), np.ceil(end) + 1.0)
    bins = edges.size - 1
    which = np.searchsorted(edges, times, side="right") - 1
    inside = (which >= 0) & (which < bins)
    which, values = which[inside], values[inside] - values[inside].mean(axis=0)
    counts = np.bincount(which, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        variance = np.zeros(bins)
        for axis in range(values.shape[1]):
            mean = np.bincount(which, values[:, axis], minlength=bins) / counts
            square = np.bincount(which, values[:, axis] ** 2, minlength=bins) / counts
            variance += np.maximum(square - mean**2, 0.0)
        levels = np.where(counts >= 2, np.sqrt(variance), np.nan)
        g_times, g_values = gyro.window(start, end)
        g_valid = np.isfinite(g_values).all(axis=1)
        g_which = np.searchsorted(edges, g_times[g_valid], side="right") - 1
        g_inside = (g_which >= 0) & (g_which < bins)
        if g_inside.sum() >= 2:
            g_mag = np.linalg.norm(g_values[g_valid][g_inside], axis=1)
            g_counts = np.bincount(g_which[g_inside], minlength=bins)
            g_mean = np.bincount(g_which[g_inside], g_mag, minlength=bins) / g_counts
            levels = np.where(g_counts > 0, levels + GYRO_WEIGHT * g_mean, levels)
    known = np.isfinite(levels)
    if not known.any():
        return None
    return edges[:-1][known], levels[known]


def moving_at(times: FloatArray, bins: tuple[FloatArray, FloatArray] | None, threshold: float) -> FloatArray:
    """For each time, 1.0 if it falls in (or next to) a moving second, else 0.0.

    A quarter second either side counts too: a beat's shape spans most of a second
    and the finger settles back on the lens only after the hand stops.
    """
    if bins is None or times.size == 0:
        return np.zeros(times.size)
    starts, levels = bins
    moving_starts = starts[levels > threshold]
    if moving_starts.size == 0:
        return np.zeros(times.size)
    distance = np.min(np.abs(times[:, None] - (moving_starts[None, :] + 0.5)), axis=1)
    flags: FloatArray = (distance <= 0.75).astype(np.float64)
    return flags
