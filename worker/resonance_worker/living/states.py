"""People's emotional states on this worker, and what ``self.reflect`` makes of them. Sans I/O.

Each person's reported and biometric states go through one :class:`EmotionSmoother`. Self-reports
(with the connection that made them as the session) and body samples (arousal readings with the
latest heart rate) are kept, the newest :data:`REFLECT_HISTORY` of each, for
:meth:`States.reflect`. Memory stays bounded by who is around: the living core calls
:meth:`States.forget` for a person gone long enough.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from resonance_worker.domain.emotion import EmotionalState, EmotionSmoother, SmoothedState, StateSource
from resonance_worker.domain.insights import ReflectiveQuestion, ask
from resonance_worker.domain.resonance import MemberState
from resonance_worker.domain.selfhood import (
    BodySample,
    SelfReport,
    StatePoint,
    harmony,
    home_state,
    pair_reports,
    self_understanding,
)

REFLECT_HISTORY = 2000
"""Self-reports and body samples kept per person for ``self.reflect`` (the newest)."""
HARMONY_WINDOW_S = 3600.0


def clip(value: float, low: float, high: float) -> float:
    return min(high, max(low, value))


def smoothed_dict(state: SmoothedState) -> dict[str, Any]:
    """A smoothed state as the RPC replies and room publications carry it."""
    return {
        "valence": round(state.valence, 4),
        "arousal": round(state.arousal, 4),
        "source": state.source.value,
        "at": state.at,
        "weight": round(state.weight, 4),
        "label": state.label,
    }


@dataclass(frozen=True, slots=True)
class Reflection:
    """What ``self.reflect`` answers, and the questions to append as events."""

    body: dict[str, Any]
    questions: list[ReflectiveQuestion]


class States:
    """Smoothed states, self-reports and body samples of the people on this worker."""

    def __init__(self, half_life_s: float) -> None:
        self.smoother = EmotionSmoother(half_life_s)
        self._reports: dict[str, deque[tuple[str, SelfReport]]] = {}
        self._body: dict[str, deque[BodySample]] = {}
        self._last_bpm: dict[str, float] = {}

    def take(self, user: str, state: EmotionalState) -> SmoothedState:
        """A new state of ``user`` (reported or from the body): the smoothed state it makes."""
        return self.smoother.update(user, state)

    def self_reported(self, user: str, session: str, state: EmotionalState) -> SelfReport:
        """Keep a self-report for ``self.reflect`` (``session``: the connection that made it)."""
        report = SelfReport(state.at, state.arousal, state.valence, state.label)
        self._reports.setdefault(user, deque(maxlen=REFLECT_HISTORY)).append((session, report))
        return report

    def restore(self, user: str, reports: list[tuple[str, SelfReport]], body: list[BodySample]) -> None:
        """What another worker kept of ``user`` (``living/person.py``), before anything of theirs here."""
        if reports:
            kept = deque(reports, maxlen=REFLECT_HISTORY)
            kept.extend(self._reports.get(user, ()))
            self._reports[user] = kept
        if body:
            samples = deque(body, maxlen=REFLECT_HISTORY)
            samples.extend(self._body.get(user, ()))
            self._body[user] = samples

    def heart_rate(self, user: str, bpm: float) -> None:
        """The latest gated heart rate, paired with the next body sample."""
        self._last_bpm[user] = bpm

    def aroused(self, user: str, index: float, now: float) -> EmotionalState:
        """An arousal reading (``index`` 0..1): kept as a body sample; the biometric state it makes
        (with the person's own valence, which the body cannot tell)."""
        arousal = clip(index, 0.0, 1.0)
        self._body.setdefault(user, deque(maxlen=REFLECT_HISTORY)).append(
            BodySample(now, arousal, self._last_bpm.get(user))
        )
        own = self.smoother.current(user)
        return EmotionalState(
            valence=own.valence if own is not None else 0.0,
            arousal=arousal,
            source=StateSource.BIOMETRIC,
            at=now,
        )

    def member_state(self, user: str) -> MemberState | None:
        """A member's state in rooms: the self-report when there is one, else the body's."""
        current = self.smoother.current(user) or self.smoother.current(user, StateSource.BIOMETRIC)
        if current is None:
            return None
        return MemberState(user, clip(current.valence, -1, 1), clip(current.arousal, 0, 1))

    def current(self, user: str) -> dict[str, Any]:
        """``state.get``: the smoothed state of each source (None where there is none)."""
        return {
            source.value: (None if (s := self.smoother.current(user, source)) is None else smoothed_dict(s))
            for source in StateSource
        }

    def reflect(self, user: str, now: float) -> Reflection:
        """Home state, harmony, self-understanding and the reflective questions they raise."""
        reports = list(self._reports.get(user, ()))
        body = list(self._body.get(user, ()))
        pairs = pair_reports([r for _, r in reports], body)
        by_session: dict[str, list[SelfReport]] = {}
        for session, report in reports:
            by_session.setdefault(session, []).append(report)
        sessions = [pair_reports(session_reports, body) for session_reports in by_session.values()]
        home = home_state(pairs)
        balance = harmony(
            [StatePoint(r.t, r.valence, r.arousal) for _, r in reports], now, window_s=HARMONY_WINDOW_S
        )
        understanding = self_understanding(sessions)
        questions = ask(
            user,
            pairs=pairs,
            home=home,
            harmony=balance,
            harmony_window_s=HARMONY_WINDOW_S,
            understanding=understanding,
        )
        body_out = {
            "home": home.to_dict(),
            "harmony": balance.to_dict(),
            "self_understanding": understanding.to_dict(),
            "questions": [q.to_dict() for q in questions],
        }
        return Reflection(body_out, questions)

    def last_body(self, user: str) -> BodySample | None:
        kept = self._body.get(user)
        return kept[-1] if kept else None

    def known(self) -> set[str]:
        """People with reports or body samples kept."""
        return set(self._reports) | set(self._body)

    def forget(self, user: str) -> None:
        for kept in (self._reports, self._body, self._last_bpm):
            kept.pop(user, None)
        self.smoother.forget(user)
