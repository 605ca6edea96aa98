"""Tunable parameters of a biometric stream, validated once when the stream is built."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from resonance_worker.domain.biometrics.errors import BiometricsConfigError

CameraRegion = Literal["finger", "face"]
FaceMethod = Literal["pos", "chrom", "green"]


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """Windows, intervals and thresholds of one per-person stream (seconds, Hz, 0..1)."""

    grid_hz: float = 30.0
    """Uniform analysis grid the samples are resampled onto from their timestamps."""
    hr_window_s: float = 10.0
    hr_interval_s: float = 1.0
    first_hr_after_s: float = 6.0
    """A first heart rate is emitted from a shorter window once this much signal is in."""
    hrv_window_s: float = 60.0
    hrv_interval_s: float = 5.0
    long_hrv_window_s: float = 120.0
    """SDNN and pNN50 need at least this long a window (RMSSD is robust from 60 s)."""
    breathing_window_s: float = 60.0
    min_breathing_window_s: float = 32.0
    max_gap_s: float = 1.0
    """A gap longer than this starts a new segment: windows never bridge it."""
    quality_threshold: float = 0.5
    """Outputs whose quality is below this carry no value (``None``) and a reason."""
    hrv_min_clean_fraction: float = 0.8
    """Share of the HRV window that must be covered by clean beat intervals."""
    breathing_max_disagreement_bpm: float = 3.0
    """Respiratory modulations whose rates spread wider than this give no estimate (4 /min let
    two modulations both caught by slow blood-pressure waves pass 6 /min off the belt: measured)."""
    motion_threshold_ms2: float = 0.6
    """Accelerometer activity (SD of |a|, m/s²) above which a second counts as moving."""
    baseline_min_hr_readings: int = 60
    baseline_min_hrv_readings: int = 3
    camera_region: CameraRegion = "finger"
    face_method: FaceMethod = "pos"
    reanalyse_long_windows: bool = False
    """Re-detect every beat of the HRV/breathing window at each of their updates instead of reusing
    the beats settled by the heart-rate windows (the slower path, kept to compare against)."""
    max_batch_samples: int = 4096
    max_batch_span_s: float = 30.0
    min_ppg_rate_hz: float = 10.0
    max_ppg_rate_hz: float = 1000.0
    min_motion_rate_hz: float = 5.0
    max_motion_rate_hz: float = 1000.0
    min_breathing_rate_hz: float = 1.0
    max_breathing_rate_hz: float = 1000.0

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not 10.0 <= self.grid_hz <= 250.0:
            problems.append("grid_hz must be within 10..250")
        if not 0 < self.hr_interval_s <= self.hr_window_s:
            problems.append("hr_interval_s must be positive and not longer than hr_window_s")
        if self.hr_window_s < 8.0:
            # Beats are settled ≥ 3 s inside both edges of a heart-rate window: it needs room.
            problems.append("hr_window_s below 8 s leaves no beats settled for HRV and breathing")
        if not 4.0 <= self.first_hr_after_s <= self.hr_window_s:
            problems.append("first_hr_after_s must be within 4 s..hr_window_s")
        if not 0 < self.hrv_interval_s <= self.hrv_window_s <= self.long_hrv_window_s:
            problems.append("need 0 < hrv_interval_s <= hrv_window_s <= long_hrv_window_s")
        if self.hrv_window_s < 30.0:
            problems.append("hrv_window_s below 30 s gives no trustworthy RMSSD")
        if not 20.0 <= self.min_breathing_window_s <= self.breathing_window_s:
            problems.append("need 20 s <= min_breathing_window_s <= breathing_window_s")
        if self.max_gap_s <= 0:
            problems.append("max_gap_s must be positive")
        for name in ("quality_threshold", "hrv_min_clean_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} must be within 0..1")
        if self.breathing_max_disagreement_bpm <= 0 or self.motion_threshold_ms2 <= 0:
            problems.append("breathing_max_disagreement_bpm and motion_threshold_ms2 must be positive")
        if self.baseline_min_hr_readings < 1 or self.baseline_min_hrv_readings < 1:
            problems.append("baseline minimum readings must be at least 1")
        if self.camera_region not in ("finger", "face"):
            problems.append("camera_region must be 'finger' or 'face'")
        if self.face_method not in ("pos", "chrom", "green"):
            problems.append("face_method must be 'pos', 'chrom' or 'green'")
        if self.max_batch_samples < 1 or self.max_batch_span_s <= 0:
            problems.append("batch limits must be positive")
        for low, high in (
            (self.min_ppg_rate_hz, self.max_ppg_rate_hz),
            (self.min_motion_rate_hz, self.max_motion_rate_hz),
            (self.min_breathing_rate_hz, self.max_breathing_rate_hz),
        ):
            if not 0 < low < high:
                problems.append("each sensor rate range needs 0 < min < max")
                break
        if problems:
            raise BiometricsConfigError("; ".join(problems))

    @property
    def buffer_s(self) -> float:
        """How much history a stream keeps: the longest window plus a margin."""
        return max(self.long_hrv_window_s, self.breathing_window_s, self.hr_window_s) + 5.0
