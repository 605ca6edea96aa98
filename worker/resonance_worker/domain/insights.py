"""Questions instead of answers: reflective questions from detected patterns.

Each finder looks for one pattern in a person's data and, when it is there,
returns a :class:`ReflectiveQuestion`: a templated question (deterministic
wording, numbers filled in) with the evidence attached, so the person can see
what it is based on. The engine interprets nothing: it points at a pattern
and asks. See docs/living-core.md.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from resonance_worker.domain.events import canonical_json
from resonance_worker.domain.resonance import PatternKind, RoomPattern
from resonance_worker.domain.selfhood import Harmony, HomeState, ReportPair, SelfUnderstanding

# Thresholds, documented in docs/living-core.md.
CALM_REPORT_MAX = 0.3
"""A report with arousal ≤ this counts as "calm"."""
TENSE_REPORT_MIN = 0.7
"""A report with arousal ≥ this counts as "tense"."""
MISMATCH_GAP = 0.3
"""The body differs from the report by at least this much."""
MIN_OCCURRENCES = 3
"""A mismatch must happen at least this often…"""
MIN_SHARE = 0.6
"""…and in at least this share of the matching reports."""
LOW_HARMONY = 0.4
LOW_STABILITY = 0.4
BIAS_NOTABLE = 0.15


@dataclass(frozen=True, slots=True)
class ReflectiveQuestion:
    """A question for ``subject`` (a person id), its template ``key`` and its evidence."""

    key: str
    subject: str
    text: str
    evidence: Mapping[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """Deterministic: the same question on the same evidence has the same id (for de-duplication)."""
        content = canonical_json({"key": self.key, "subject": self.subject, "evidence": dict(self.evidence)})
        return hashlib.sha256(content.encode("utf-8")).hexdigest()[:32]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "key": self.key,
            "subject": self.subject,
            "text": self.text,
            "evidence": dict(self.evidence),
        }


def _minutes(seconds: float) -> str:
    minutes = max(1, round(seconds / 60))
    return "minute" if minutes == 1 else f"{minutes} minutes"


def _times(count: int, total: int) -> str:
    return "each time" if count == total else f"{count} of {total} times"


def _mismatch(
    subject: str,
    pairs: Sequence[ReportPair],
    *,
    key: str,
    selects: str,
    resting_bpm: float | None,
) -> ReflectiveQuestion | None:
    if selects == "calm":
        chosen = [p for p in pairs if p.reported <= CALM_REPORT_MAX]
        hits = [p for p in chosen if p.body - p.reported >= MISMATCH_GAP]
    else:
        chosen = [p for p in pairs if p.reported >= TENSE_REPORT_MIN]
        hits = [p for p in chosen if p.reported - p.body >= MISMATCH_GAP]
    if len(hits) < MIN_OCCURRENCES or len(hits) / len(chosen) < MIN_SHARE:
        return None
    evidence: dict[str, Any] = {
        "moments": [p.to_dict() for p in hits],
        "matching_reports": len(chosen),
        "mismatches": len(hits),
    }
    beats = [p.bpm for p in hits if p.bpm is not None]
    if selects == "calm":
        body_phrase = "your body was activated"
        if resting_bpm is not None and len(beats) == len(hits):
            above = sum(beats) / len(beats) - resting_bpm
            evidence["mean_bpm_above_resting"] = round(above, 1)
            if above > 0:
                body_phrase = f"your heart rate was up, about {above:.0f} bpm above your resting rate,"
        times = _times(len(hits), len(chosen))
        text = f"{body_phrase} {times} you reported feeling calm — what was happening then?"
    else:
        text = (
            f"your body was quieter than you felt {_times(len(hits), len(chosen))} you reported feeling "
            "tense — what were you bracing for?"
        )
    return ReflectiveQuestion(key, subject, text[0].upper() + text[1:], evidence)


def calm_but_activated(
    subject: str, pairs: Sequence[ReportPair], *, resting_bpm: float | None = None
) -> ReflectiveQuestion | None:
    """Reported calm (arousal ≤ 0.3) while the body was ≥ 0.3 more aroused, ≥ 3 times and in ≥ 60 %."""
    return _mismatch(subject, pairs, key="calm_but_activated", selects="calm", resting_bpm=resting_bpm)


def tense_but_quiet(subject: str, pairs: Sequence[ReportPair]) -> ReflectiveQuestion | None:
    """Reported tense (arousal ≥ 0.7) while the body was ≥ 0.3 less aroused, ≥ 3 times and in ≥ 60 %."""
    return _mismatch(subject, pairs, key="tense_but_quiet", selects="tense", resting_bpm=None)


def from_home_state(subject: str, home: HomeState) -> ReflectiveQuestion | None:
    """Agreement that comes and goes (stability < 0.4)."""
    if home.stability is None or home.stability >= LOW_STABILITY:
        return None
    text = (
        "Your words and your body agreed at some moments and parted ways at others — "
        "what was different about the moments when they agreed?"
    )
    return ReflectiveQuestion("home_unsteady", subject, text, home.to_dict())


def from_harmony(subject: str, result: Harmony, window_s: float) -> ReflectiveQuestion | None:
    """States spread widely over the window (harmony < 0.4)."""
    if result.score is None or result.score >= LOW_HARMONY:
        return None
    text = f"Your states ranged widely in the last {_minutes(window_s)} — what pulled you in different ways?"
    return ReflectiveQuestion("harmony_low", subject, text, result.to_dict())


def from_self_understanding(subject: str, result: SelfUnderstanding) -> list[ReflectiveQuestion]:
    """An improving calibration, and a notable bias either way."""
    questions = []
    evidence = result.to_dict()
    if result.trend == "improving":
        text = (
            "Your reports have tracked your body more closely session after session — "
            "what have you started noticing?"
        )
        questions.append(ReflectiveQuestion("understanding_improving", subject, text, evidence))
    if result.bias is not None and result.bias >= BIAS_NOTABLE:
        text = "You often report more activation than your body shows — what does feeling tense mean for you?"
        questions.append(ReflectiveQuestion("reports_above_body", subject, text, evidence))
    elif result.bias is not None and result.bias <= -BIAS_NOTABLE:
        text = "Your body is often more activated than you report — when do you first notice it?"
        questions.append(ReflectiveQuestion("reports_below_body", subject, text, evidence))
    return questions


def from_room_pattern(pattern: RoomPattern, members: Sequence[str]) -> list[ReflectiveQuestion]:
    """Questions for the room's members about a room pattern (one per member it concerns)."""
    evidence = pattern.to_dict()
    if pattern.kind is PatternKind.LEADER_FOLLOWER:
        leader = str(pattern.evidence["leader"])
        followers: Mapping[str, Mapping[str, Any]] = pattern.evidence["followers"]
        lags = sorted(float(f["lag_s"]) for f in followers.values())
        others = "one other" if len(followers) == 1 else f"{len(followers)} others"
        questions = [
            ReflectiveQuestion(
                "room_leading",
                leader,
                f"When your state shifted, {others} in the room followed within about {lags[-1]:g} s — "
                "did you sense you were setting the tone?",
                evidence,
            )
        ]
        for follower, detail in sorted(followers.items()):
            questions.append(
                ReflectiveQuestion(
                    "room_following",
                    follower,
                    f"Your state tended to follow {leader}'s by about {float(detail['lag_s']):g} s — "
                    "what were you picking up from them?",
                    evidence,
                )
            )
        return questions
    span = _minutes(float(pattern.evidence.get("over_s", 60.0)))
    if pattern.kind is PatternKind.CONVERGENCE:
        text = f"The room drifted into agreement over the last {span} — what brought you closer?"
        key = "room_converging"
    else:
        text = f"The room drifted apart over the last {span} — where did your attention go?"
        key = "room_diverging"
    return [ReflectiveQuestion(key, member, text, evidence) for member in sorted(members)]


def ask(
    subject: str,
    *,
    pairs: Sequence[ReportPair] = (),
    resting_bpm: float | None = None,
    home: HomeState | None = None,
    harmony: Harmony | None = None,
    harmony_window_s: float = 3600.0,
    understanding: SelfUnderstanding | None = None,
) -> list[ReflectiveQuestion]:
    """All of a person's questions, in a fixed order (body mismatches first), without duplicates."""
    found: list[ReflectiveQuestion | None] = [
        calm_but_activated(subject, pairs, resting_bpm=resting_bpm),
        tense_but_quiet(subject, pairs),
        from_home_state(subject, home) if home is not None else None,
        from_harmony(subject, harmony, harmony_window_s) if harmony is not None else None,
    ]
    if understanding is not None:
        found.extend(from_self_understanding(subject, understanding))
    seen: set[str] = set()
    questions = []
    for question in found:
        if question is not None and question.id not in seen:
            seen.add(question.id)
            questions.append(question)
    return questions
