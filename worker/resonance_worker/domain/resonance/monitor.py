"""One room over time: the :class:`RoomMonitor` the wiring feeds and ticks, and the
:class:`ResonancePublisher` that decides when a room's resonance is worth publishing."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import StrEnum

from resonance_worker.domain.resonance.measures import (
    HeartRateSample,
    MemberState,
    ResonanceConfig,
    RoomResonance,
    room_resonance,
)
from resonance_worker.domain.resonance.patterns import (
    PatternKind,
    RoomPattern,
    detect_agreement_trend,
    detect_leader_follower,
    detect_leader_follower_pairwise,
)

# ----------------------------------------------------------------------------- publishing


class PublishReason(StrEnum):
    FIRST = "first"
    CADENCE = "cadence"
    CHANGE = "change"


class ResonancePublisher:
    """When to publish a room's resonance: first value, every ``cadence_s``, and on a change
    of at least ``min_change`` (but not more often than every ``min_gap_s``)."""

    def __init__(self, cadence_s: float = 5.0, min_change: float = 0.1, min_gap_s: float = 1.0) -> None:
        if not (cadence_s > 0 and min_change > 0 and 0 <= min_gap_s <= cadence_s):
            raise ValueError("need cadence_s > 0, min_change > 0 and 0 ≤ min_gap_s ≤ cadence_s")
        self.cadence_s, self.min_change, self.min_gap_s = cadence_s, min_change, min_gap_s
        self._last_at: float | None = None
        self._last_score: float | None = None

    def decide(self, now: float, score: float | None) -> PublishReason | None:
        """The reason to publish ``score`` now, or None; a returned reason counts as published."""
        reason: PublishReason | None = None
        if self._last_at is None:
            reason = PublishReason.FIRST
        elif now - self._last_at >= self.cadence_s:
            reason = PublishReason.CADENCE
        elif now - self._last_at >= self.min_gap_s and self._changed(score):
            reason = PublishReason.CHANGE
        if reason is not None:
            self._last_at, self._last_score = now, score
        return reason

    def _changed(self, score: float | None) -> bool:
        if (score is None) != (self._last_score is None):
            return True
        if score is None or self._last_score is None:
            return False
        return abs(score - self._last_score) >= self.min_change


# ----------------------------------------------------------------------------- one room


@dataclass(frozen=True, slots=True)
class RoomTick:
    """What one tick of a room produced."""

    resonance: RoomResonance
    publish: PublishReason | None
    """Set when the resonance should be published now."""
    patterns: tuple[RoomPattern, ...]
    """Patterns that newly appeared at this tick (each fires once until it disappears)."""


class RoomMonitor:
    """One room: members' latest states, their heart-rate and valence windows, the publisher,
    the agreement history and edge-triggered patterns. The wiring feeds it and calls ``tick``."""

    def __init__(
        self,
        room_id: str,
        config: ResonanceConfig,
        publisher: ResonancePublisher | None = None,
        *,
        pairwise: bool = False,
    ) -> None:
        self.room_id = room_id
        self.config = config
        self.pairwise = pairwise
        """Compute by the pair-by-pair reference definitions (O(n²) Python; for tests and benchmarks)."""
        self.publisher = publisher or ResonancePublisher()
        self._states: dict[str, MemberState] = {}
        self._heart: dict[str, deque[HeartRateSample]] = {}
        self._valence: dict[str, deque[tuple[float, float]]] = {}
        self._agreement: deque[tuple[float, float]] = deque()
        self._active: set[PatternKind] = set()

    @property
    def members(self) -> list[str]:
        return sorted(set(self._states) | set(self._heart))

    def update_state(self, state: MemberState, at: float) -> None:
        self._states[state.member_id] = state
        self._valence.setdefault(state.member_id, deque()).append((at, state.valence))

    def add_heart_rate(self, member_id: str, sample: HeartRateSample) -> None:
        self._heart.setdefault(member_id, deque()).append(sample)

    def remove_member(self, member_id: str) -> None:
        self._states.pop(member_id, None)
        self._heart.pop(member_id, None)
        self._valence.pop(member_id, None)

    def trim(self, now: float) -> None:
        """Forget what has left the window (``tick`` does it too; for a monitor not ticked)."""
        self._trim(now)

    def _trim(self, now: float) -> None:
        horizon = now - self.config.window_s
        for samples in self._heart.values():
            while samples and samples[0].t < horizon:
                samples.popleft()
        for points in self._valence.values():
            # Keep one point before the horizon: it still holds at the window's start.
            while len(points) > 1 and points[1][0] <= horizon:
                points.popleft()
        while self._agreement and self._agreement[0][0] < horizon:
            self._agreement.popleft()

    def tick(self, now: float) -> RoomTick:
        """Compute the resonance at ``now``, decide publishing and detect new patterns."""
        self._trim(now)
        resonance = room_resonance(
            self.room_id,
            list(self._states.values()),
            {m: list(s) for m, s in self._heart.items()},
            now,
            self.config,
            pairwise=self.pairwise,
        )
        if resonance.agreement is not None:
            self._agreement.append((now, resonance.agreement))
        found: list[RoomPattern] = []
        trend = detect_agreement_trend(self.room_id, list(self._agreement), now, self.config)
        detect = detect_leader_follower_pairwise if self.pairwise else detect_leader_follower
        leader = detect(self.room_id, {m: list(p) for m, p in self._valence.items()}, now, self.config)
        present = {p.kind for p in (trend, leader) if p is not None}
        for pattern in (trend, leader):
            if pattern is not None and pattern.kind not in self._active:
                found.append(pattern)
        self._active = present
        return RoomTick(resonance, self.publisher.decide(now, resonance.score), tuple(found))
