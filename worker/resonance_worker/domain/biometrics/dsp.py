"""Signal building blocks: uniform resampling, filters, camera RGB to pulse signal."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from resonance_worker.domain.biometrics import scientific
from resonance_worker.domain.biometrics.buffer import FloatArray

PULSE_BAND_HZ = (0.5, 4.0)
"""30–240 bpm; wide enough for exercise, narrow enough to drop breathing drift and flicker."""


def uniform_grid(
    times: FloatArray, values: FloatArray, start: float, end: float, rate_hz: float
) -> tuple[FloatArray, FloatArray, float]:
    """Linearly resample ``values`` (n × channels) onto ``k / rate_hz`` grid points in [start, end].

    The grid is anchored at absolute multiples of the period, so successive windows
    share sample instants. Rows with missing values are skipped; grid points that
    fall in a hole wider than three grid periods (or 2.5 raw periods) are filled
    by interpolation but counted in the returned missing fraction.
    """
    first = int(np.ceil(start * rate_hz - 1e-9))
    last = int(np.floor(end * rate_hz + 1e-9))
    grid_t = np.arange(first, last + 1, dtype=np.float64) / rate_hz
    valid = np.isfinite(values).all(axis=1)
    t_ok, v_ok = times[valid], values[valid]
    if grid_t.size == 0 or t_ok.size < 2:
        return grid_t, np.full((grid_t.size, values.shape[1]), np.nan), 1.0
    grid_v = np.column_stack([np.interp(grid_t, t_ok, v_ok[:, c]) for c in range(values.shape[1])])
    raw_period = float(np.median(np.diff(t_ok)))
    tolerance = max(3.0 / rate_hz, 2.5 * raw_period)
    right = np.clip(np.searchsorted(t_ok, grid_t), 1, t_ok.size - 1)
    nearest = np.minimum(np.abs(t_ok[right] - grid_t), np.abs(grid_t - t_ok[right - 1]))
    hole = ((t_ok[right] - t_ok[right - 1]) > tolerance) & (nearest > 0.5 * raw_period)
    hole |= (grid_t < t_ok[0] - tolerance) | (grid_t > t_ok[-1] + tolerance)
    return grid_t, grid_v, float(hole.mean())


@lru_cache(maxsize=64)
def _design(low: float, high: float, rate_hz: float, order: int) -> tuple[FloatArray, FloatArray]:
    """Second-order sections and their step-response initial state (both cached: designing
    them costs more than filtering a 10 s window)."""
    nyquist = rate_hz / 2.0
    high = min(high, 0.9 * nyquist)
    signal = scientific.signal()
    sos: FloatArray = signal.butter(order, [low, high], btype="band", fs=rate_hz, output="sos")
    initial: FloatArray = signal.sosfilt_zi(sos)
    return sos, initial


def bandpass(x: FloatArray, rate_hz: float, low: float, high: float, order: int = 2) -> FloatArray:
    """Zero-phase Butterworth band-pass (no delay, so beat times are not shifted).

    Forward-backward filtering with odd reflection at both ends, like scipy's
    ``sosfiltfilt`` but with the filter design cached.
    """
    sos, initial = _design(low, high, rate_hz, order)
    x = x - float(np.mean(x))
    pad = min(x.size - 1, 3 * (2 * sos.shape[0] + 1) * 4)
    if pad < 1:
        return x
    extended = np.concatenate((2 * x[0] - x[pad:0:-1], x, 2 * x[-1] - x[-2 : -pad - 2 : -1]))
    signal = scientific.signal()
    forward, _ = signal.sosfilt(sos, extended, zi=initial * extended[0])
    backward, _ = signal.sosfilt(sos, forward[::-1], zi=initial * forward[-1])
    filtered: FloatArray = backward[::-1][pad:-pad]
    return filtered


def _window_sums(values: FloatArray, length: int) -> FloatArray:
    """Sums over every run of ``length`` consecutive rows (a moving sum from cumulative sums)."""
    cumulative = np.concatenate((np.zeros((1, *values.shape[1:])), np.cumsum(values, axis=0)))
    sums: FloatArray = cumulative[length:] - cumulative[:-length]
    return sums


def pos(rgb: FloatArray, rate_hz: float, window_s: float = 1.6) -> FloatArray:
    """Plane-orthogonal-to-skin pulse (Wang et al. 2017) from per-frame mean R, G, B of a face.

    Each 1.6 s window is normalised by its own mean colour, projected onto the plane
    orthogonal to the skin tone (S1 = G − B, S2 = −2R + G + B), tuned by the ratio of the
    two projections' spreads (which cancels specular/motion components) and overlap-added.
    The sign is flipped so the systolic peak points up: blood dims green most, which drives
    the G−B projection down at each beat.

    Computed without a loop over windows: every window's pulse is one linear combination of
    the frame's R, G, B (its mean is zero by construction), so the overlap-add is each frame's
    R, G, B times the summed coefficients of the windows covering it, and the spreads come from
    moving sums of the channels, their squares and products — O(frames), equal to the direct
    overlap-add to ~1e-13.
    """
    frames = rgb.shape[0]
    length = max(2, round(window_s * rate_hz))
    if frames < length + 1:
        return np.zeros(frames)
    count = frames - length + 1
    centre = rgb.mean(axis=0)
    x = rgb - centre  # centred: moving sums of squares stay well conditioned
    mean = _window_sums(x, length) / length
    square = _window_sums(x * x, length) / length
    products = np.column_stack((x[:, 0] * x[:, 1], x[:, 0] * x[:, 2], x[:, 1] * x[:, 2]))
    cov_rg, cov_rb, cov_gb = (
        _window_sums(products, length) / length
        - np.column_stack((mean[:, 0] * mean[:, 1], mean[:, 0] * mean[:, 2], mean[:, 1] * mean[:, 2]))
    ).T
    var_r, var_g, var_b = np.maximum(square - mean**2, 0.0).T
    r, g, b = np.maximum(mean + centre, 1e-9).T  # each window's mean colour
    var_s1 = var_g / g**2 + var_b / b**2 - 2 * cov_gb / (g * b)
    var_s2 = (
        4 * var_r / r**2
        + var_g / g**2
        + var_b / b**2
        - 4 * cov_rg / (r * g)
        - 4 * cov_rb / (r * b)
        + 2 * cov_gb / (g * b)
    )
    spread_1 = np.sqrt(np.maximum(var_s1, 0.0))
    spread_2 = np.sqrt(np.maximum(var_s2, 0.0))
    alpha = np.where(spread_2 > 1e-12, spread_1 / np.where(spread_2 > 1e-12, spread_2, 1.0), 0.0)
    # Window w's pulse at frame t: S1 + α·S2 = −2α·R/r + (1 + α)·G/g + (α − 1)·B/b.
    coefficients = np.column_stack((-2 * alpha / r, (1 + alpha) / g, (alpha - 1) / b))
    cumulative = np.concatenate((np.zeros((1, 3)), np.cumsum(coefficients, axis=0)))
    frame = np.arange(frames)
    covering = cumulative[np.minimum(frame, count - 1) + 1] - cumulative[np.maximum(frame - length + 1, 0)]
    pulse: FloatArray = -np.einsum("ij,ij->i", covering, rgb)
    return pulse


def chrom(rgb: FloatArray, rate_hz: float) -> FloatArray:
    """Chrominance pulse (de Haan & Jeanne 2013) from per-frame mean R, G, B of a face."""
    normalised = rgb / np.maximum(rgb.mean(axis=0, keepdims=True), 1e-9)
    red, green, blue = normalised[:, 0], normalised[:, 1], normalised[:, 2]
    xs = bandpass(3.0 * red - 2.0 * green, rate_hz, *PULSE_BAND_HZ)
    ys = bandpass(1.5 * red + green - 1.5 * blue, rate_hz, *PULSE_BAND_HZ)
    spread_y = float(ys.std())
    alpha = float(xs.std()) / spread_y if spread_y > 1e-12 else 0.0
    pulse: FloatArray = xs - alpha * ys
    return pulse


def green(rgb: FloatArray) -> FloatArray:
    """The inverted, mean-normalised green channel: the single channel with the strongest pulse on
    skin (Verkruysse et al. 2008). A baseline only: an illumination change or a movement moves it as
    much as the pulse does, which POS and CHROM cancel."""
    channel = rgb[:, 1]
    level = float(np.mean(channel))
    pulse: FloatArray = -channel / level if level > 1e-9 else np.zeros(channel.size)
    return pulse


def band_concentration(x: FloatArray, rate_hz: float) -> float:
    """Share of the pulse-band power in its strongest 0.2 Hz: near 1 for a clean pulse, low for noise."""
    if x.size < 8 or float(np.std(x)) < 1e-12:
        return 0.0
    spectrum = np.abs(np.fft.rfft((x - x.mean()) * np.hanning(x.size), n=max(1024, x.size))) ** 2
    freqs = np.fft.rfftfreq(max(1024, x.size), 1.0 / rate_hz)
    band = (freqs >= 0.7) & (freqs <= 3.5)
    total = float(spectrum[band].sum())
    if total <= 0.0:
        return 0.0
    peak = float(freqs[band][np.argmax(spectrum[band])])
    near = band & (np.abs(freqs - peak) <= 0.1)
    return float(spectrum[near].sum()) / total


def finger_pulse(rgb: FloatArray, rate_hz: float) -> FloatArray:
    """Pulse from a fingertip over the lens: the inverted colour channel with the cleanest pulse.

    More blood absorbs more light, so brightness dips at each beat; inverting puts
    the systolic peak up. With the flash on, red is often clipped and green
    carries the pulse; in dim light red is best, so the channel is chosen per window.
    """
    best: FloatArray | None = None
    best_score = -1.0
    for channel in range(3):
        raw = rgb[:, channel]
        level = float(np.mean(raw))
        if level <= 1e-9:
            continue
        candidate = -raw / level
        score = band_concentration(bandpass(candidate, rate_hz, *PULSE_BAND_HZ), rate_hz)
        if score > best_score:
            best, best_score = candidate, score
    return best if best is not None else np.zeros(rgb.shape[0])
