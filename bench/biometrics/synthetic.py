"""Synthetic pulse signals with known truth: beat times, breathing rate and motion spans.

Beats follow an interval series with a set mean rate, respiratory sinus arrhythmia
at the breathing rate and random beat-to-beat variation. Each beat is a systolic
and a smaller diastolic Gaussian wave; breathing also swings the baseline and
the beat amplitude. The signal is evaluated at any timestamps, so jittered camera
frame times are exact, not interpolated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

# Relative pulsatile strength per colour channel of skin (de Haan & van Leest 2014).
SKIN_PULSE_SIGNATURE = np.array([0.33, 0.77, 0.53])


@dataclass(frozen=True)
class Truth:
    beat_times: FloatArray
    """Onset (foot) time of each beat, seconds."""
    breathing_bpm: float

    def intervals_ms(self, start: float, end: float) -> FloatArray:
        beats = self.beat_times[(self.beat_times >= start) & (self.beat_times <= end)]
        return np.diff(beats) * 1000.0

    def rmssd_ms(self, start: float, end: float) -> float:
        return float(np.sqrt(np.mean(np.square(np.diff(self.intervals_ms(start, end))))))

    def hr_bpm(self, start: float, end: float) -> float:
        """Mean instantaneous rate of the beats ending inside [start, end)."""
        beats = self.beat_times
        ends = beats[1:]
        inside = (ends >= start) & (ends < end)
        return float(np.mean(60.0 / np.diff(beats)[inside]))


def beat_times(
    duration_s: float,
    *,
    hr_bpm: float = 70.0,
    rsa_ms: float = 40.0,
    breathing_bpm: float = 15.0,
    variability_ms: float = 15.0,
    seed: int = 0,
) -> FloatArray:
    rng = np.random.default_rng(seed)
    times = [0.3]
    mean_interval = 60.0 / hr_bpm
    while times[-1] < duration_s + 2.0:
        t = times[-1]
        rsa = rsa_ms / 1000.0 * np.sin(2 * np.pi * breathing_bpm / 60.0 * t)
        times.append(t + mean_interval - rsa + rng.normal(0.0, variability_ms / 1000.0))
    return np.asarray(times)


def _wave(since: FloatArray) -> FloatArray:
    """One beat's shape against time since its onset (s): systolic then diastolic wave."""
    return np.exp(-(((since - 0.18) / 0.07) ** 2)) + 0.45 * np.exp(-(((since - 0.42) / 0.1) ** 2))


def pulse_at(
    t: FloatArray, beats: FloatArray, *, breathing_bpm: float = 15.0, modulation: float = 0.1
) -> FloatArray:
    """PPG value (systolic peak up, about unit size) at times ``t``.

    The wave is fixed in seconds after each onset, so every fiducial (peak, steepest
    upstroke) lags its onset by a constant and keeps the true interval variability.
    """
    index = np.clip(np.searchsorted(beats, t, side="right") - 1, 1, beats.size - 1)
    wave = _wave(t - beats[index]) + _wave(t - beats[index - 1])
    breath = np.sin(2 * np.pi * breathing_bpm / 60.0 * t)
    return (1.0 + modulation * breath) * wave + modulation * breath


def frame_times(duration_s: float, *, fps: float = 30.0, jitter: float = 0.0, seed: int = 0) -> FloatArray:
    """Camera frame timestamps; ``jitter`` makes each frame period vary uniformly by ±jitter·period."""
    rng = np.random.default_rng(seed)
    count = int(duration_s * fps)
    steps = (1.0 / fps) * (1.0 + rng.uniform(-jitter, jitter, count))
    return np.cumsum(steps)


def motion_bursts(t: FloatArray, share: float = 0.2, seed: int = 1) -> FloatArray:
    """1.0 inside randomly chosen whole seconds (``share`` of them), else 0.0."""
    rng = np.random.default_rng(seed)
    seconds = int(np.ceil(t[-1])) + 1
    moving = rng.random(seconds) < share
    return moving[np.clip(t.astype(int), 0, seconds - 1)].astype(np.float64)


def band_noise(t: FloatArray, seed: int = 1, low: float = 0.5, high: float = 3.0) -> FloatArray:
    """Unit-SD random noise confined to ``low..high`` Hz (sum of random sinusoids)."""
    rng = np.random.default_rng(seed)
    freqs = rng.uniform(low, high, 40)
    phases = rng.uniform(0, 2 * np.pi, 40)
    noise = np.sin(2 * np.pi * freqs[None, :] * t[:, None] + phases[None, :]).sum(axis=1)
    return noise / noise.std()


def accelerometer(t: FloatArray, moving: FloatArray, seed: int = 2, level_ms2: float = 2.0) -> FloatArray:
    """Phone accelerometer (m/s²): gravity on z, sensor noise, shaking where ``moving``."""
    rng = np.random.default_rng(seed)
    accel = rng.normal(0.0, 0.03, (t.size, 3))
    accel[:, 2] += 9.81
    accel += moving[:, None] * rng.normal(0.0, level_ms2, (t.size, 3))
    return accel


def finger_rgb(t: FloatArray, pulse: FloatArray, seed: int = 3) -> FloatArray:
    """Mean R, G, B of a fingertip on the lens with the flash on: red bright, dips at each beat."""
    rng = np.random.default_rng(seed)
    level = np.array([200.0, 40.0, 25.0])
    depth = np.array([0.01, 0.02, 0.01])
    rgb = level[None, :] * (1.0 - depth[None, :] * pulse[:, None])
    return rgb + rng.normal(0.0, 0.05, rgb.shape)


def face_rgb(
    t: FloatArray, pulse: FloatArray, *, motion: FloatArray | None = None, seed: int = 4
) -> FloatArray:
    """Mean R, G, B of a face: blood dims the skin by 0.3 % with the skin signature; optional motion
    that changes the light intensity and adds a white specular glint."""
    rng = np.random.default_rng(seed)
    level = np.array([180.0, 120.0, 90.0])
    intensity = np.ones(t.size)
    specular = np.zeros(t.size)
    if motion is not None:
        intensity = 1.0 + 0.01 * motion
        specular = 2.0 * np.abs(motion)
    rgb = level[None, :] * intensity[:, None] * (1.0 - 0.003 * SKIN_PULSE_SIGNATURE[None, :] * pulse[:, None])
    return rgb + specular[:, None] + rng.normal(0.0, 0.02, rgb.shape)


@dataclass(frozen=True)
class SkinTone:
    """Mean linear R, G, B of a lit face region (0..255) and how deep the pulse dims it."""

    level: tuple[float, float, float]
    pulse_depth: float
    """Relative dimming at the systolic peak, before the channel signature: melanin absorbs much of
    the light before it reaches the blood, so darker skin carries a weaker pulse (Nowara 2020)."""


SKIN_TONES = {
    "light": SkinTone((205.0, 150.0, 125.0), 0.004),
    "medium": SkinTone((170.0, 115.0, 85.0), 0.003),
    "dark": SkinTone((95.0, 62.0, 45.0), 0.0015),
}
BACKGROUND_RGB = np.array([70.0, 85.0, 100.0])
"""A bluish wall behind the head: pixels of it enter the face box when the head moves."""


def face_scene(
    t: FloatArray,
    pulse: FloatArray,
    *,
    skin: str = "medium",
    flicker_hz: float | None = None,
    flicker_depth: float = 0.01,
    motion: FloatArray | None = None,
    seed: int = 5,
) -> FloatArray:
    """Mean R, G, B of a face box in a real room, per frame.

    * skin tone sets the colour and the pulse depth, with the skin's pulse signature per channel;
    * the box always holds some hair and wall (15 %); head motion changes that share, which
      changes the colour, not just the brightness, and adds a white specular glint;
    * the camera's auto white balance creeps each channel's gain slowly and independently;
    * ``flicker_hz``: lamp flicker (an LED dimmer, or mains flicker aliased by the frame rate)
      changes the light's intensity — on every channel alike — at that frequency;
    * sensor noise after averaging ~10 000 pixels of σ ≈ 3 levels each (0.03 level).
    """
    rng = np.random.default_rng(seed)
    tone = SKIN_TONES[skin]
    skin_rgb = np.asarray(tone.level)[None, :] * (
        1.0 - tone.pulse_depth * SKIN_PULSE_SIGNATURE[None, :] * pulse[:, None] / 0.77
    )
    share = np.full(t.size, 0.15)
    glint = np.zeros(t.size)
    if motion is not None:
        share = share + 0.03 * motion
        glint = 1.0 * np.abs(motion)
    mixed = (1.0 - share[:, None]) * skin_rgb + share[:, None] * BACKGROUND_RGB[None, :]
    phases = rng.uniform(0, 2 * np.pi, 3)
    white_balance = 1.0 + 0.01 * np.sin(2 * np.pi * 0.02 * t[:, None] + phases[None, :])
    light = np.ones(t.size)
    if flicker_hz is not None:
        light = 1.0 + flicker_depth * np.sin(2 * np.pi * flicker_hz * t)
    rgb = light[:, None] * white_balance * mixed + glint[:, None]
    return rgb + rng.normal(0.0, 0.03, rgb.shape)
