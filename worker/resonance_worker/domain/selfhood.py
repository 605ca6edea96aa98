"""Selfhood: home state, harmony and self-understanding — reflective measures, not diagnoses.

All three compare what a person *says* about their arousal with what their
*body* shows (physiological arousal 0..1, e.g. from heart rate above a resting
rate), or look at how their reported states spread over time. They describe
the data a person chose to share; they claim nothing medical or psychological.
See docs/living-core.md for the definitions and their limits.

- **Home state** ("home is you when you are sincere with yourself"): for each
  self-report paired with the body's arousal around it, agreement
  ``g = 1 − |reported − body|``; coherence ``C = mean g``; stability
  ``S = clip(1 − 2·std g, 0, 1)``; ``home = C·S``.
- **Harmony**: balance of a person's reported states over a window — how
  concentrated they are, time-weighted:
  ``H = 1 − √(var(v/2) + var(a)) / √0.5``.
- **Self-understanding**: calibration of self-reports against the body across
  sessions: ``U = ½·max(0, r) + ½·(1 − mean|reported − body|)`` with ``r`` the
  Pearson correlation over all pairs, plus the bias and the per-session trend.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from resonance_worker.domain.resonance import pearson

_MAX_SPREAD = math.sqrt(0.5)


class SelfhoodInputError(ValueError):
    """A report or body sample that cannot be used."""


def _finite(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SelfhoodInputError(f"{name} must be a finite number")
    return float(value)


def _unit(value: float, name: str, low: float = 0.0) -> float:
    _finite(value, name)
    if not low <= value <= 1.0:
        raise SelfhoodInputError(f"{name} must be within {low:g}..1, got {value}")
    return float(value)


@dataclass(frozen=True, slots=True)
class SelfReport:
    """What the person said at ``t``: arousal 0..1, optionally valence −1..1 and a label."""

    t: float
    arousal: float
    valence: float = 0.0
    label: str | None = None

    def __post_init__(self) -> None:
        _finite(self.t, "t")
        _unit(self.arousal, "arousal")
        _unit(self.valence, "valence", -1.0)


@dataclass(frozen=True, slots=True)
class BodySample:
    """Physiological arousal 0..1 at ``t``; ``bpm`` is kept for the questions' wording."""

    t: float
    arousal: float
    bpm: float | None = None

    def __post_init__(self) -> None:
        _finite(self.t, "t")
        _unit(self.arousal, "arousal")


def body_arousal_from_heart_rate(bpm: float, resting_bpm: float, span_bpm: float = 40.0) -> float:
    """``clip((bpm − resting) / span, 0, 1)``: 0 at the resting rate, 1 at ``span`` above it.

    A crude proxy: heart rate also rises with movement, heat, caffeine, illness.
    """
    if not (math.isfinite(bpm) and math.isfinite(resting_bpm) and span_bpm > 0):
        raise SelfhoodInputError("bpm, resting_bpm must be finite and span_bpm positive")
    return min(1.0, max(0.0, (bpm - resting_bpm) / span_bpm))


@dataclass(frozen=True, slots=True)
class ReportPair:
    """A self-report and the body's mean arousal within the pairing tolerance around it."""

    t: float
    reported: float
    body: float
    bpm: float | None
    label: str | None

    @property
    def gap(self) -> float:
        """``reported − body``: positive when the person reported more activation than the body showed."""
        return self.reported - self.body

    def to_dict(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "reported": round(self.reported, 4),
            "body": round(self.body, 4),
            "bpm": None if self.bpm is None else round(self.bpm, 1),
            "label": self.label,
        }


def pair_reports(
    reports: Iterable[SelfReport], body: Iterable[BodySample], tolerance_s: float = 30.0
) -> list[ReportPair]:
    """Pair each report with the mean body arousal (and bpm) of samples within ±``tolerance_s``.

    Reports with no body sample that close are left out: silence is not agreement.
    """
    samples = sorted(body, key=lambda s: s.t)
    times = np.array([s.t for s in samples], dtype=np.float64)
    pairs: list[ReportPair] = []
    for report in sorted(reports, key=lambda r: r.t):
        lo = int(np.searchsorted(times, report.t - tolerance_s, side="left"))
        hi = int(np.searchsorted(times, report.t + tolerance_s, side="right"))
        near = samples[lo:hi]
        if not near:
            continue
        beats = [s.bpm for s in near if s.bpm is not None]
        pairs.append(
            ReportPair(
                t=report.t,
                reported=report.arousal,
                body=float(np.mean([s.arousal for s in near])),
                bpm=float(np.mean(beats)) if beats else None,
                label=report.label,
            )
        )
    return pairs


# ----------------------------------------------------------------------------- home state


@dataclass(frozen=True, slots=True)
class HomeState:
    score: float | None
    """``coherence × stability`` in 0..1; None with too few paired moments."""
    coherence: float | None
    stability: float | None
    pairs: int
    explanation: str
    largest_gap: ReportPair | None

    def to_dict(self) -> dict[str, Any]:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 4)

        return {
            "score": rounded(self.score),
            "coherence": rounded(self.coherence),
            "stability": rounded(self.stability),
            "pairs": self.pairs,
            "explanation": self.explanation,
            "largest_gap": None if self.largest_gap is None else self.largest_gap.to_dict(),
        }


def _steadiness(stability: float) -> str:
    if stability >= 0.7:
        return "steady"
    if stability >= 0.4:
        return "variable"
    return "unsteady"


def home_state(pairs: Sequence[ReportPair], *, min_pairs: int = 3) -> HomeState:
    """The home state from paired moments (choose the window when pairing)."""
    if len(pairs) < min_pairs:
        return HomeState(
            None, None, None, len(pairs), f"not enough paired moments yet ({len(pairs)} of {min_pairs})", None
        )
    agreements = np.array([1.0 - abs(p.gap) for p in pairs])
    coherence = float(agreements.mean())
    stability = min(1.0, max(0.0, 1.0 - 2.0 * float(agreements.std())))
    largest = max(pairs, key=lambda p: (abs(p.gap), -p.t))
    explanation = (
        f"over {len(pairs)} moments your reported arousal matched your body's to within "
        f"{1 - coherence:.2f} on average (coherence {coherence:.2f}); the match was "
        f"{_steadiness(stability)} (stability {stability:.2f})"
    )
    if abs(largest.gap) >= 0.2:
        explanation += (
            f"; the widest gap was at t={largest.t:g}: you reported {largest.reported:.2f}, "
            f"your body showed {largest.body:.2f}"
        )
    return HomeState(coherence * stability, coherence, stability, len(pairs), explanation, largest)


# ----------------------------------------------------------------------------- harmony


@dataclass(frozen=True, slots=True)
class StatePoint:
    """A reported state (valence −1..1, arousal 0..1) at ``t``; it holds until the next one."""

    t: float
    valence: float
    arousal: float

    def __post_init__(self) -> None:
        _finite(self.t, "t")
        _unit(self.valence, "valence", -1.0)
        _unit(self.arousal, "arousal")


@dataclass(frozen=True, slots=True)
class Harmony:
    score: float | None
    """1 = one steady state all window long, 0 = split between opposite corners; None with < 2 states."""
    centre_valence: float | None
    centre_arousal: float | None
    spread: float | None
    """Time-weighted RMS distance from the centre in (v/2, a)."""
    states: int
    covered_s: float

    def to_dict(self) -> dict[str, Any]:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 4)

        return {
            "score": rounded(self.score),
            "centre_valence": rounded(self.centre_valence),
            "centre_arousal": rounded(self.centre_arousal),
            "spread": rounded(self.spread),
            "states": self.states,
            "covered_s": self.covered_s,
        }


def harmony(points: Iterable[StatePoint], now: float, window_s: float = 3600.0) -> Harmony:
    """Harmony over ``[now − window_s, now]``; each state weighs the time it held inside the window.

    The last state before the window holds into it. Steady sadness scores as
    harmonious as steady joy: harmony is balance, not happiness — read it with
    the centre.
    """
    start = now - window_s
    ordered = sorted((p for p in points if p.t <= now), key=lambda p: p.t)
    before = [p for p in ordered if p.t <= start]
    inside = ([before[-1]] if before else []) + [p for p in ordered if p.t > start]
    if len(inside) < 2:
        return Harmony(None, None, None, None, len(inside), 0.0)
    begins = [max(p.t, start) for p in inside]
    ends = [*begins[1:], now]
    weights = np.array([end - begin for begin, end in zip(begins, ends, strict=True)])
    covered = float(weights.sum())
    if covered <= 0:
        return Harmony(None, None, None, None, len(inside), 0.0)
    u = np.array([p.valence / 2.0 for p in inside])
    a = np.array([p.arousal for p in inside])
    mean_u, mean_a = float(np.average(u, weights=weights)), float(np.average(a, weights=weights))
    variance = float(np.average((u - mean_u) ** 2 + (a - mean_a) ** 2, weights=weights))
    spread = math.sqrt(max(0.0, variance))
    return Harmony(1.0 - spread / _MAX_SPREAD, 2.0 * mean_u, mean_a, spread, len(inside), covered)


# ----------------------------------------------------------------------------- self-understanding


@dataclass(frozen=True, slots=True)
class SelfUnderstanding:
    score: float | None
    """½·max(0, r) + ½·(1 − mean error); without r (too few or constant pairs): 1 − mean error."""
    tracking: float | None
    """Pearson r between reported and body arousal over all pairs."""
    mean_error: float | None
    bias: float | None
    """mean(reported − body): > 0 reports more activation than the body shows."""
    session_agreement: tuple[float, ...]
    """1 − mean|gap| per session, in session order."""
    trend: str | None
    """improving | steady | declining over sessions (needs ≥ 3 sessions)."""
    pairs: int
    sessions: int

    def to_dict(self) -> dict[str, Any]:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 4)

        return {
            "score": rounded(self.score),
            "tracking": rounded(self.tracking),
            "mean_error": rounded(self.mean_error),
            "bias": rounded(self.bias),
            "session_agreement": [round(g, 4) for g in self.session_agreement],
            "trend": self.trend,
            "pairs": self.pairs,
            "sessions": self.sessions,
        }


def self_understanding(
    sessions: Sequence[Sequence[ReportPair]],
    *,
    min_pairs: int = 5,
    min_sessions: int = 2,
    trend_per_session: float = 0.02,
) -> SelfUnderstanding:
    """Calibration across ``sessions`` (oldest first; each a list of paired moments)."""
    used = [session for session in sessions if session]
    pairs = [p for session in used for p in session]
    agreements = tuple(1.0 - float(np.mean([abs(p.gap) for p in session])) for session in used)
    if len(pairs) < min_pairs or len(used) < min_sessions:
        return SelfUnderstanding(None, None, None, None, agreements, None, len(pairs), len(used))
    reported = np.array([p.reported for p in pairs])
    body = np.array([p.body for p in pairs])
    tracking = pearson(reported, body)
    gaps = reported - body
    mean_error = float(np.abs(gaps).mean())
    bias = float(gaps.mean())
    score = 1.0 - mean_error if tracking is None else 0.5 * max(0.0, tracking) + 0.5 * (1.0 - mean_error)
    trend: str | None = None
    if len(used) >= 3:
        index = np.arange(len(agreements), dtype=np.float64)
        centred = index - index.mean()
        slope = float(centred @ (np.array(agreements) - np.mean(agreements))) / float(centred @ centred)
        trend = (
            "improving"
            if slope >= trend_per_session
            else "declining"
            if slope <= -trend_per_session
            else "steady"
        )
    return SelfUnderstanding(score, tracking, mean_error, bias, agreements, trend, len(pairs), len(used))
