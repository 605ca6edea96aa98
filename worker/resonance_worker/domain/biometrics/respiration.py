"""Breathing rate from the pulse's respiratory modulations, fused only when they agree.

Breathing modulates the pulse three ways (Charlton et al. 2016; Karlen et al. 2013):

* ``baseline``  — the pulse's intensity at each beat rises and falls (RIIV);
* ``amplitude`` — each beat's height swings (RIAV);
* ``interval``  — beats come faster on inhalation (RIFV, respiratory sinus arrhythmia).

Each beat-wise series is interpolated to 4 Hz, detrended, and its spectral peak in
6–42 breaths/min is taken. Like Karlen's Smart Fusion, the estimates are averaged
only when they spread less than a set width; otherwise there is no estimate.
A breathing envelope (e.g. microphone) is a fourth, independent source.
"""

from __future__ import annotations

import itertools

import numpy as np

from resonance_worker.domain.biometrics.buffer import FloatArray

SERIES_RATE_HZ = 4.0
BAND_HZ = (0.1, 0.7)
MIN_PEAK_SHARE = 0.2
"""A spectral peak holding less of the band's power than this is no rhythm at all."""


def spectral_rate(
    times: FloatArray, values: FloatArray, *, min_swing: float = 0.0, series_rate_hz: float = SERIES_RATE_HZ
) -> float | None:
    """Dominant rate (per minute) of an irregularly sampled series in 6–42 /min, or None.

    A series whose standard deviation is under ``min_swing`` is too flat to be breathing:
    at 30 Hz even a perfectly steady pulse shows tiny periodic beat-to-beat ripples from
    where the samples fall on each beat, and they must not pass for a rhythm.
    """
    finite = np.isfinite(values)
    times, values = times[finite], values[finite]
    if times.size < 6 or float(times[-1] - times[0]) < 20.0 or float(np.std(values)) < min_swing:
        return None
    grid = np.arange(times[0], times[-1], 1.0 / series_rate_hz)
    series = np.interp(grid, times, values)
    # Remove a straight-line trend: slow drift would otherwise own the lowest bins.
    series = series - np.polyval(np.polyfit(grid - grid[0], series, 1), grid - grid[0])
    if float(np.std(series)) < 1e-12:
        return None
    size = max(1024, series.size)
    spectrum = np.abs(np.fft.rfft(series * np.hanning(series.size), n=size)) ** 2
    freqs = np.fft.rfftfreq(size, 1.0 / series_rate_hz)
    band = (freqs >= BAND_HZ[0]) & (freqs <= BAND_HZ[1])
    power = spectrum[band]
    total = float(power.sum())
    if total <= 0.0:
        return None
    peak = int(np.argmax(power))
    near = np.abs(freqs[band] - freqs[band][peak]) <= 0.03
    if float(power[near].sum()) / total < MIN_PEAK_SHARE:
        return None
    return float(60.0 * freqs[band][peak])


def fuse(rates: dict[str, float | None], max_spread: float) -> tuple[float | None, bool]:
    """Mean of the available rates if they spread no wider than ``max_spread``.

    Returns (rate, disagreed). Fewer than two available sources give no estimate:
    a single modulation is too often a harmonic or a movement.
    """
    present = [rate for rate in rates.values() if rate is not None]
    if len(present) < 2:
        return None, False
    if max(present) - min(present) > max_spread:
        # Two agreeing out of three still carry the rate; the outlier is ignored.
        ordered = sorted(present)
        pairs = [(b - a, (a + b) / 2.0) for a, b in itertools.pairwise(ordered)]
        spread, centre = min(pairs)
        if len(present) >= 3 and spread <= max_spread / 2.0:
            return centre, False
        return None, True
    return float(np.mean(present)), False
