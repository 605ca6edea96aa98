"""Beat detection for low-rate (≈30 Hz) pulse signals, with sub-sample timing and per-beat morphology.

Steps, on one window of a uniformly sampled pulse signal:

1. band-pass 0.5–4 Hz (zero phase);
2. the dominant beat period from the autocorrelation (lags for 35–220 bpm);
3. systolic peaks at least 0.55 periods apart with a prominence of at least a
   quarter of the window's robust peak-to-peak size — the period guard stops the
   dicrotic notch from counting as a beat, the prominence guard stops noise;
4. each beat's time is the steepest point of its upstroke (the fiducial with the
   least pulse-arrival jitter), refined between samples by a parabola through the
   derivative — at 30 Hz whole-sample times alone add ±17 ms to every interval;
5. each beat is correlated with the window's median beat (template matching,
   Orphanidou et al. 2015); a low correlation marks an artefact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from resonance_worker.domain.biometrics import scientific
from resonance_worker.domain.biometrics.buffer import FloatArray
from resonance_worker.domain.biometrics.dsp import PULSE_BAND_HZ, bandpass

MIN_BPM = 35.0
MAX_BPM = 220.0
MIN_INTERVAL_S = 60.0 / MAX_BPM
MAX_INTERVAL_S = 60.0 / MIN_BPM
MAX_SPACING_S = 0.45
"""Cap on the minimum peak spacing: past the dicrotic notch, yet a doubled period estimate
(motion can fool the autocorrelation) cannot make every other beat disappear."""
HALF_PERIOD_SHARE = 0.7
"""An autocorrelation peak at half the best lag this high (relative) means the best lag spans two beats."""
LOCAL_PROMINENCE = 0.3
"""A peak must stand out by this share of the local swing to count as a beat."""
GOOD_MORPHOLOGY = 0.86
"""Template correlation above which a beat's shape counts as clean (Orphanidou et al. 2015)."""


@dataclass(frozen=True, slots=True)
class Beats:
    """Beats found in one window; arrays are aligned, times in stream seconds."""

    times: FloatArray
    """Sub-sample time of the steepest upstroke of each beat."""
    peak_times: FloatArray
    amplitudes: FloatArray
    """Peak minus the preceding trough, in the band-passed signal."""
    intensities: FloatArray
    """The unfiltered signal at each peak: its slow swing follows breathing (baseline modulation)."""
    morphology: FloatArray
    """Correlation with the window's median beat, −1..1; NaN where too little of the beat is in view."""
    period_s: float | None
    periodicity: float
    """Height of the autocorrelation at its best beat lag, 0..1."""


def _parabolic_offset(before: FloatArray, centre: FloatArray, after: FloatArray) -> FloatArray:
    curvature = before - 2.0 * centre + after
    safe = np.where(np.abs(curvature) > 1e-12, curvature, -1.0)
    offset = np.where(np.abs(curvature) > 1e-12, 0.5 * (before - after) / safe, 0.0)
    return np.clip(offset, -0.5, 0.5)


def _vertex_height(x: FloatArray, index: FloatArray) -> FloatArray:
    """Height of the parabola through each sample and its neighbours, at its vertex (within ±½ sample)."""
    inner = np.clip(index.astype(int), 1, x.size - 2)
    before, centre, after = x[inner - 1], x[inner], x[inner + 1]
    offset = _parabolic_offset(before, centre, after)
    height: FloatArray = centre - 0.25 * (before - after) * offset
    return height


def dominant_period(filtered: FloatArray, rate_hz: float) -> tuple[float | None, float]:
    """Beat period (s) from the highest autocorrelation peak in 35–220 bpm, and that peak's height."""
    n = filtered.size
    min_lag = max(1, int(np.floor(MIN_INTERVAL_S * rate_hz)))
    max_lag = min(n - 2, int(np.ceil(MAX_INTERVAL_S * rate_hz)))
    energy = float(np.dot(filtered, filtered))
    if max_lag <= min_lag + 1 or energy <= 1e-18:
        return None, 0.0
    spectrum = np.fft.rfft(filtered, n=2 * n)
    acf = np.fft.irfft(spectrum * np.conj(spectrum))[: max_lag + 2] / energy
    # Unbiased: divide by overlap so long lags are not penalised.
    acf = acf * n / (n - np.arange(acf.size))
    candidates, _ = scientific.signal().find_peaks(acf[: max_lag + 1])
    candidates = candidates[candidates >= min_lag]
    if candidates.size == 0:
        return None, 0.0
    best = int(candidates[np.argmax(acf[candidates])])
    height = float(acf[best])
    # A strong peak at a third or half of the lag means `best` spans several beats (e.g. beats
    # of alternating size); the shortest such lag is the beat.
    for parts in (3, 2):
        near = candidates[np.abs(candidates - best / parts) <= max(1.0, 0.1 * best / parts)]
        if near.size and float(acf[near].max()) > HALF_PERIOD_SHARE * height and near.min() >= min_lag:
            best = int(near[np.argmax(acf[near])])
            height = float(acf[best])
            break
    offset = 0.0
    if 0 < best < acf.size - 1:
        offset = float(
            _parabolic_offset(acf[best - 1 : best], acf[best : best + 1], acf[best + 1 : best + 2])[0]
        )
    return (best + offset) / rate_hz, float(np.clip(height, 0.0, 1.0))


def detect_beats(pulse: FloatArray, rate_hz: float, start_time: float) -> Beats:
    """Find beats in a uniformly sampled pulse signal whose first sample is at ``start_time``."""
    empty = np.empty(0)
    if pulse.size < int(3 * rate_hz) or float(np.std(pulse)) < 1e-12:
        return Beats(empty, empty, empty, empty, empty, None, 0.0)
    filtered = bandpass(pulse, rate_hz, *PULSE_BAND_HZ)
    period, periodicity = dominant_period(filtered, rate_hz)
    spacing = min(0.55 * period, MAX_SPACING_S) if period is not None else MIN_INTERVAL_S
    # Prominence is judged against the local swing (max − min over about two beats), so a
    # burst of motion artefact does not raise the bar for the clean beats around it.
    reach = max(3, round(1.6 * (period or 0.8) * rate_hz))
    ndimage = scientific.ndimage()
    swing = ndimage.maximum_filter1d(filtered, reach) - ndimage.minimum_filter1d(filtered, reach)
    peaks, _ = scientific.signal().find_peaks(
        filtered,
        distance=max(1, int(spacing * rate_hz)),
        prominence=LOCAL_PROMINENCE * swing,
    )
    peaks = peaks[(peaks > 0) & (peaks < filtered.size - 1)]
    if peaks.size == 0:
        return Beats(empty, empty, empty, empty, empty, period, periodicity)
    if peaks.size >= 3:
        # The peaks found can expose a period that spans several beats (the autocorrelation of
        # beats of alternating size peaks at two or three of them): for the upstroke search and
        # the template (and for whoever reads `period_s`), the beats' own spacing wins.
        spacing_s = float(np.median(np.diff(peaks))) / rate_hz
        if period is None or spacing_s < 0.75 * period:
            period = spacing_s
    peak_offsets = _parabolic_offset(filtered[peaks - 1], filtered[peaks], filtered[peaks + 1])
    peak_times = start_time + (peaks + peak_offsets) / rate_hz

    slope = np.gradient(filtered)
    reach = max(2, int(0.4 * (period or 0.8) * rate_hz))
    # Look back from each peak over `reach` samples: steepest rise and lowest point (the trough).
    back = peaks[:, None] - np.arange(reach + 1)[None, :]
    previous = np.concatenate(([0], peaks[:-1]))
    # Never look back past the previous peak: two beats must not share one upstroke.
    usable = (back >= 1) & (back > previous[:, None])
    clipped = np.clip(back, 0, filtered.size - 1)
    rising = np.where(usable, slope[clipped], -np.inf)
    steepest = back[np.arange(peaks.size), np.argmax(rising, axis=1)]
    steepest = np.clip(steepest, 1, filtered.size - 2)
    upstrokes = steepest + _parabolic_offset(slope[steepest - 1], slope[steepest], slope[steepest + 1])
    trough_at = back[
        np.arange(peaks.size), np.argmin(np.where(usable | (back == 0), filtered[clipped], np.inf), axis=1)
    ]
    times = start_time + upstrokes / rate_hz
    # Heights at the parabola's vertex, not at the nearest sample: at 30 Hz where the samples fall
    # on each beat drifts with the heart rate, and whole-sample heights swing with it by up to ~5 %
    # — a slow, regular ripple that all three breathing modulations share (measured: false
    # 15–25 /min rates agreeing across modulations on a pulse with no breathing in it).
    amplitudes = _vertex_height(filtered, peaks) - _vertex_height(filtered, trough_at)
    intensities = _vertex_height(pulse, peaks)
    morphology = _template_correlation(filtered, upstrokes, period, rate_hz)
    return Beats(times, peak_times, amplitudes, intensities, morphology, period, periodicity)


def _template_correlation(
    filtered: FloatArray, fiducials: FloatArray, period: float | None, rate_hz: float
) -> FloatArray:
    """Pearson correlation of each beat with the median beat (NaN where under half of it is in view)."""
    count = fiducials.size
    if count < 3:
        return np.full(count, np.nan)
    if period is None:
        intervals = np.diff(fiducials) / rate_hz
        period = float(np.median(intervals))
    length = max(6, round(period * rate_hz))
    before = round(0.3 * length)
    index = np.round(fiducials).astype(int)[:, None] + np.arange(-before, length - before)[None, :]
    inside = (index >= 0) & (index < filtered.size)
    segments = np.where(inside, filtered[np.clip(index, 0, filtered.size - 1)], np.nan)
    enough = inside.mean(axis=1) >= 0.5
    full = inside.all(axis=1)
    if full.sum() < 2:
        return np.full(count, np.nan)
    template = np.median(segments[full], axis=0)
    weights = inside.astype(np.float64)
    counts = np.maximum(weights.sum(axis=1, keepdims=True), 1.0)
    values = np.where(inside, segments, 0.0)
    a = (values - values.sum(axis=1, keepdims=True) / counts) * weights
    shaped = template[None, :] * weights
    b = (shaped - shaped.sum(axis=1, keepdims=True) / counts) * weights
    denominator = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    safe = np.where(denominator > 1e-18, denominator, 1.0)
    correlation = np.where(denominator > 1e-18, (a * b).sum(axis=1) / safe, 0.0)
    return np.where(enough, correlation, np.nan)
