"""Emotional state: validating a client's report and smoothing a person's state.

A state is a point in the valence/arousal plane: valence −1 (unpleasant) … 1
(pleasant), arousal 0 (deactivated) … 1 (activated), plus an optional short
label ("calm", "tense") and where it came from (the person's own report, or
derived from their biometrics). See docs/living-core.md.

Smoothing is a time-decayed mean per person and source: every report weighs
``2^(−age / half_life)``, so old reports fade and bursts at one instant are
averaged rather than letting the last one win.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

LABEL_MAX_CHARS = 40
# Letters of any script, digits, space and a little punctuation; no control or markup characters.
_LABEL_PUNCTUATION = frozenset(" -_'.,!?&/()")
_REPORT_FIELDS = frozenset({"valence", "arousal", "label", "source"})


class StateSource(StrEnum):
    """Where a state came from."""

    SELF_REPORT = "self_report"
    BIOMETRIC = "biometric"


class EmotionReportError(ValueError):
    """A report that cannot be accepted; ``field`` names the culprit, ``reason`` says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class EmotionalState:
    """One validated state at stream time ``at`` (seconds)."""

    valence: float
    arousal: float
    source: StateSource
    at: float
    label: str | None = None

    def __post_init__(self) -> None:
        _check_unit(self.valence, "valence", -1.0, 1.0)
        _check_unit(self.arousal, "arousal", 0.0, 1.0)
        if not math.isfinite(self.at):
            raise EmotionReportError("at", "must be a finite number of seconds")
        if self.label is not None and self.label != _clean_label(self.label):
            raise EmotionReportError("label", "must be a cleaned label (use parse_report)")

    def to_dict(self) -> dict[str, float | str | None]:
        """Plain JSON-ready form."""
        return {
            "valence": self.valence,
            "arousal": self.arousal,
            "source": self.source.value,
            "at": self.at,
            "label": self.label,
        }


def _number(value: object, field: str) -> float:
    # bool is an int subclass; true/false is never a valence.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EmotionReportError(field, f"must be a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise EmotionReportError(field, "must be finite")
    return number


def _check_unit(value: float, field: str, low: float, high: float) -> None:
    number = _number(value, field)
    if not low <= number <= high:
        raise EmotionReportError(field, f"must be between {low:g} and {high:g}, got {number:g}")


def _clean_label(raw: str) -> str:
    label = " ".join(unicodedata.normalize("NFC", raw).split())
    if not label:
        raise EmotionReportError("label", "must not be blank")
    if len(label) > LABEL_MAX_CHARS:
        raise EmotionReportError("label", f"must be at most {LABEL_MAX_CHARS} characters")
    for char in label:
        if not (char.isalnum() or char in _LABEL_PUNCTUATION):
            raise EmotionReportError("label", f"contains a character that is not allowed: {char!r}")
    return label


def parse_report(raw: object, *, now: float) -> EmotionalState:
    """Validate a client's report (a decoded JSON object) received at ``now``.

    Required: ``valence`` (−1…1), ``arousal`` (0…1). Optional: ``label``
    (≤ 40 characters of letters, digits, spaces and ``-_'.,!?&/()``; whitespace
    is collapsed), ``source`` (``self_report``, the default, or ``biometric``).
    Unknown fields are refused so that a typo is not silently ignored.
    """
    if not isinstance(raw, Mapping):
        raise EmotionReportError("report", "must be a JSON object")
    unknown = sorted(str(key) for key in raw if key not in _REPORT_FIELDS)
    if unknown:
        raise EmotionReportError(unknown[0], "unknown field")
    for required in ("valence", "arousal"):
        if required not in raw:
            raise EmotionReportError(required, "is required")
    valence = _number(raw["valence"], "valence")
    arousal = _number(raw["arousal"], "arousal")
    _check_unit(valence, "valence", -1.0, 1.0)
    _check_unit(arousal, "arousal", 0.0, 1.0)
    label_raw = raw.get("label")
    label: str | None = None
    if label_raw is not None:
        if not isinstance(label_raw, str):
            raise EmotionReportError("label", "must be a string")
        label = _clean_label(label_raw)
    source_raw = raw.get("source", StateSource.SELF_REPORT.value)
    try:
        source = StateSource(source_raw)
    except ValueError:
        allowed = ", ".join(item.value for item in StateSource)
        raise EmotionReportError("source", f"must be one of {allowed}") from None
    return EmotionalState(valence=valence, arousal=arousal, source=source, at=now, label=label)


@dataclass(frozen=True, slots=True)
class SmoothedState:
    """A person's smoothed state for one source: the decayed mean of their reports."""

    valence: float
    arousal: float
    source: StateSource
    at: float
    """Time of the latest report folded in."""
    weight: float
    """Σ 2^(−age/half_life) over the reports: ≈ how many recent reports back this value."""
    label: str | None
    """The latest report's label (labels are not averaged)."""


class EmotionSmoother:
    """Per-person, per-source smoothing of reported states.

    Closed form: ``S(t_n) = Σ x_i·w_i / Σ w_i`` with ``w_i = 2^(−(t_n − t_i)/h)``,
    computed incrementally as ``W_n = W_(n−1)·2^(−Δt/h) + 1`` and
    ``S_n = S_(n−1) + (x_n − S_(n−1)) / W_n``. A report older than the last one
    (a clock step back) is folded in as if it arrived at the last time.
    """

    def __init__(self, half_life_s: float = 60.0) -> None:
        if not (math.isfinite(half_life_s) and half_life_s > 0):
            raise ValueError("half_life_s must be a positive number")
        self.half_life_s = half_life_s
        self._states: dict[tuple[str, StateSource], SmoothedState] = {}

    def update(self, person_id: str, state: EmotionalState) -> SmoothedState:
        """Fold ``state`` into the person's smoothed state for its source and return the result."""
        key = (person_id, state.source)
        previous = self._states.get(key)
        if previous is None:
            smoothed = SmoothedState(state.valence, state.arousal, state.source, state.at, 1.0, state.label)
        else:
            elapsed = max(0.0, state.at - previous.at)
            weight = previous.weight * math.exp2(-elapsed / self.half_life_s) + 1.0
            smoothed = SmoothedState(
                valence=previous.valence + (state.valence - previous.valence) / weight,
                arousal=previous.arousal + (state.arousal - previous.arousal) / weight,
                source=state.source,
                at=max(previous.at, state.at),
                weight=weight,
                label=state.label,
            )
        self._states[key] = smoothed
        return smoothed

    def current(self, person_id: str, source: StateSource = StateSource.SELF_REPORT) -> SmoothedState | None:
        """The person's smoothed state for ``source``, or None before their first report."""
        return self._states.get((person_id, source))

    def forget(self, person_id: str) -> None:
        """Drop everything about a person (they left, or asked to be forgotten)."""
        for source in StateSource:
            self._states.pop((person_id, source), None)
