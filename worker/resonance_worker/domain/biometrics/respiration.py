"""Breathing rate from the pulse's respiratory modulations, fused only when they agree.

Breathing modulates the pulse three ways (Charlton et al. 2016; Karlen et al. 2013):

* ``baseline``  — the pulse's intensity at each beat rises and falls (RIIV);
* ``amplitude`` — each beat's height swings (RIAV);
* ``interval``  — beats come faster on inhalation (RIFV, respiratory sinus arrhythmia).

Each beat-wise series is interpolated to 4 Hz and band-passed to 5.4–42 breaths/min
(zero phase). Its rate is estimated twice, by two methods that fail differently:

* the **spectral peak** (Hann window) — precise for steady breathing, but on irregular
  breathing it lands on whatever slow swing is strongest (Mayer waves at ≈ 6 /min, sighs);
* **breath counting** (Schäfer & Kratky 2008): peaks standing out by at least 0.3 × the
  upper quartile of the series' swings, rate = breaths ÷ the time they span — robust to
  irregular breathing, but it miscounts when noise rides on the series.

A modulation counts only when both methods agree within a tolerance; the modulations are
fused only when at least two of them agree (like Karlen's Smart Fusion); otherwise there
is **no estimate**. A breathing envelope (e.g. microphone) goes through the same test.

Window pitfalls handled here: a 32 s window resolves only 1/32 Hz (≈ 1.9 /min) and a
Hann window's main lobe is ±2 of those bins wide, so zero padding makes the peak smoother,
not sharper; the peak's share of the band is judged over its whole main lobe; a "peak" on
the band's lower edge is leakage from slower swings, not a breathing rhythm, and is refused;
and drift is removed by the band-pass, not by a straight-line fit that leaves slow waves in.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from resonance_worker.domain.biometrics import scientific
from resonance_worker.domain.biometrics.buffer import FloatArray
from resonance_worker.domain.biometrics.dsp import bandpass

SERIES_RATE_HZ = 4.0
FILTER_HZ = (0.08, 0.7)
"""The series' band-pass: a lower cut any lower lets slow blood-pressure waves set the counting
threshold (measured: half the pyphysio windows lost their amplitude estimate at 0.072 Hz)."""
BAND_HZ = (0.09, 0.7)
"""5.4–42 breaths/min: panting down to slow paced breathing, with 6 /min (resonance breathing) off
the edge — the spectrum of a 6 /min rhythm, tilted by the band-pass, peaks just under 0.1 Hz."""
MIN_SPAN_S = 20.0
MIN_PEAK_SHARE = 0.2
"""A spectral peak (with its main lobe) holding less of the band's power than this is no rhythm."""
COUNT_PROMINENCES = (0.3, 0.2, 0.1)
"""A breath must rise by this share of the upper quartile of the series' swings. Schäfer & Kratky
used 0.3; on the pyphysio recording that missed a quarter of the belt's breaths (small breaths
between big ones) and only 0.1 counted them, while at 6 /min 0.1 counts beat-to-beat noise as
breaths. So the count closest to the spectral peak, of these three thresholds, is the check."""
METHOD_TOLERANCE_BPM = 3.0
"""Spectral and counted rates of one modulation must agree this closely for it to count."""


@dataclass(frozen=True, slots=True)
class RateEstimate:
    """One modulation's breathing rate (per minute) and the two estimates it came from.

    ``rate`` is None when the series has a rhythm but counting and spectrum disagree on it."""

    rate: float | None
    spectral: float | None
    counted: float | None


def breathing_series(
    times: FloatArray, values: FloatArray, *, series_rate_hz: float = SERIES_RATE_HZ
) -> tuple[FloatArray, FloatArray] | None:
    """An irregularly sampled series (e.g. one value per beat) on a uniform grid, band-passed to the
    breathing band; None when too short."""
    finite = np.isfinite(values)
    times, values = times[finite], values[finite]
    if times.size < 6 or float(times[-1] - times[0]) < MIN_SPAN_S:
        return None
    grid = np.arange(times[0], times[-1], 1.0 / series_rate_hz)
    # A cubic spline, not straight lines: at 20 breaths/min and 70 bpm there are only 3–4 beats
    # per breath, and linear interpolation flattens those peaks until counting misses them
    # (measured on the pyphysio recording: the amplitude series' spectrum lost its 20 /min peak).
    series = scientific.interpolate().CubicSpline(times, values)(grid)
    return grid, bandpass(series, series_rate_hz, *FILTER_HZ)


def spectral_peak_rate(series: FloatArray, series_rate_hz: float = SERIES_RATE_HZ) -> float | None:
    """The spectral peak (per minute) inside the band, or None if it is on the band's edge or
    holds too little of the band's power (main lobe included)."""
    if float(np.std(series)) < 1e-12:
        return None
    size = max(2048, 2 * series.size)
    spectrum = np.abs(np.fft.rfft(series * np.hanning(series.size), n=size)) ** 2
    freqs = np.fft.rfftfreq(size, 1.0 / series_rate_hz)
    band = np.flatnonzero((freqs >= BAND_HZ[0]) & (freqs <= BAND_HZ[1]))
    power = spectrum[band]
    peak = int(np.argmax(power))
    at = int(band[peak])
    if not spectrum[at - 1] <= spectrum[at] >= spectrum[at + 1]:
        return None  # still rising at the band's edge: leakage from a slower (or faster) swing
    lobe = 2.0 * series_rate_hz / series.size  # Hann main-lobe half-width, Hz
    near = np.abs(freqs[band] - freqs[band][peak]) <= lobe
    if float(power[near].sum()) / float(power.sum()) < MIN_PEAK_SHARE:
        return None
    return float(60.0 * freqs[band][peak])


def counted_rates(grid: FloatArray, series: FloatArray, prominences: tuple[float, ...]) -> list[float | None]:
    """Breaths per minute by counting the series' peaks that rise by at least each of ``prominences``
    × the upper quartile of its peak-to-trough swings; None where fewer than three breaths stand out."""
    extrema = np.flatnonzero(np.diff(np.sign(np.diff(series))) != 0) + 1
    if extrema.size < 4:
        return [None] * len(prominences)
    upper_swing = float(np.percentile(np.abs(np.diff(series[extrema])), 75))
    shortest_breath = 1.0 / BAND_HZ[1]
    min_distance = max(1, int(shortest_breath / float(grid[1] - grid[0])))
    # One search for all thresholds: find_peaks applies `distance` before `prominence`, so
    # filtering its prominences afterwards is the same as searching once per threshold.
    peaks, properties = scientific.signal().find_peaks(series, distance=min_distance, prominence=0.0)
    rates: list[float | None] = []
    for prominence in prominences:
        breaths = peaks[properties["prominences"] >= prominence * upper_swing]
        if breaths.size < 3:
            rates.append(None)
        else:
            rates.append(float(60.0 * (breaths.size - 1) / (grid[breaths[-1]] - grid[breaths[0]])))
    return rates


def modulation_rate(
    times: FloatArray, values: FloatArray, *, min_swing: float = 0.0, series_rate_hz: float = SERIES_RATE_HZ
) -> RateEstimate | None:
    """Breathing rate (per minute) of one modulation series.

    None when the series is too short or swings less than ``min_swing`` (at 30 Hz even a
    steady pulse ripples from where the samples fall on each beat; that is no rhythm). An
    estimate whose ``rate`` is None when it has no clear spectral peak, too few breaths to
    count, or when counting its breaths disagrees with its spectrum.
    """
    finite = np.isfinite(values)
    if finite.sum() < 6 or float(np.std(values[finite])) < max(min_swing, 1e-12):
        return None
    prepared = breathing_series(times, values, series_rate_hz=series_rate_hz)
    if prepared is None:
        return None
    grid, series = prepared
    spectral = spectral_peak_rate(series, series_rate_hz)
    found = [count for count in counted_rates(grid, series, COUNT_PROMINENCES) if count is not None]
    counted = min(found, key=lambda count: abs(count - (spectral or 0.0))) if found else None
    if spectral is None or counted is None or abs(spectral - counted) > METHOD_TOLERANCE_BPM:
        return RateEstimate(None, spectral, counted)
    return RateEstimate((spectral + counted) / 2.0, spectral, counted)


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
