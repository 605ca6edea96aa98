"""What a stream emits: frozen values that serialise to plain JSON dicts.

Every reading carries ``t`` (stream time: the clock of the sample timestamps,
seconds) and ``quality`` (0..1). A value that did not pass the quality gate is
``None`` and ``reason`` says why; the core never fills in a guess.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Literal

JsonValue = float | int | str | bool | None | dict[str, "JsonValue"] | list["JsonValue"]

Activity = Literal["unknown", "still", "light", "moving", "vigorous"]
ArousalLevel = Literal["below_baseline", "near_baseline", "above_baseline"]

# Reasons a value is None (documented in docs/biometrics.md).
REASON_LOW_QUALITY = "low_quality"
REASON_MOTION = "motion"
REASON_TOO_FEW_BEATS = "too_few_beats"
REASON_DISAGREE = "modulations_disagree"
REASON_NO_SIGNAL = "no_signal"
REASON_BASELINE_PENDING = "baseline_pending"
REASON_FACE_VIDEO = "not_from_face_video"


def _plain(value: object) -> JsonValue:
    if isinstance(value, float):
        return round(value, 4) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    raise TypeError(f"cannot serialise {type(value).__name__}")  # pragma: no cover - a programming error


@dataclass(frozen=True, slots=True)
class _Reading:
    kind: str = field(init=False)
    t: float
    quality: float

    def to_dict(self) -> dict[str, JsonValue]:
        """A plain dict (floats rounded to 4 decimals) ready for JSON."""
        return {item.name: _plain(getattr(self, item.name)) for item in fields(self)}


@dataclass(frozen=True, slots=True)
class HeartRateReading(_Reading):
    """Heart rate from the last ``window_s`` seconds (10 s, shorter only for the first values)."""

    kind: str = field(init=False, default="heart_rate")
    bpm: float | None
    window_s: float
    beats: int
    motion: float | None
    """Accelerometer activity in m/s² (SD of |a|) over the window; None without accelerometer."""
    activity: Activity
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class HrvReading(_Reading):
    """Beat-interval variability. RMSSD from 60 s; SDNN and pNN50 only from ≥ 120 s windows."""

    kind: str = field(init=False, default="hrv")
    rmssd_ms: float | None
    sdnn_ms: float | None
    pnn50_pct: float | None
    mean_hr_bpm: float | None
    window_s: float
    intervals: int
    clean_fraction: float
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class BreathingReading(_Reading):
    """Breathing rate fused from the PPG's respiratory modulations (and the breathing envelope)."""

    kind: str = field(init=False, default="breathing")
    rate_bpm: float | None
    window_s: float
    sources: dict[str, float | None]
    """Per-source rates in breaths/min: ``baseline``, ``amplitude``, ``interval``, ``envelope``."""
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class ArousalReading(_Reading):
    """Physiological arousal relative to this person's own baseline. Not a diagnosis, not an emotion."""

    kind: str = field(init=False, default="arousal")
    index: float | None
    """0..1; 0.5 is the person's baseline, higher is more aroused/activated."""
    z: float | None
    level: ArousalLevel | None
    components: dict[str, float | None]
    """z-scores: ``hr`` (+), ``ln_rmssd`` (sign flipped: lower RMSSD = more aroused), ``breathing`` (+)."""
    baseline_ready: bool
    reason: str | None = None


Reading = HeartRateReading | HrvReading | BreathingReading | ArousalReading
