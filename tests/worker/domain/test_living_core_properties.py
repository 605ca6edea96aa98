"""Properties of the living core that must hold for any input (hypothesis)."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st
from resonance_worker.domain.emotion import EmotionalState, EmotionSmoother, StateSource
from resonance_worker.domain.events import Event, EventType
from resonance_worker.domain.resonance import MemberState, state_agreement
from resonance_worker.domain.selfhood import StatePoint, harmony
from resonance_worker.domain.thyroid import PainSnapshot, PainSource, Thyroid, ThyroidConfig, ThyroidState

valences = st.floats(-1, 1, allow_nan=False)
arousals = st.floats(0, 1, allow_nan=False)
levels = st.dictionaries(st.sampled_from(list(PainSource)), st.floats(0, 1000, allow_nan=False), max_size=7)


@st.composite
def snapshots(draw: st.DrawFn) -> PainSnapshot:
    slow = draw(levels)
    return PainSnapshot(
        origin=draw(st.sampled_from(["a", "b", "c"])),
        at=draw(st.floats(0, 1000, allow_nan=False)),
        half_life_s=60.0,
        slow=slow,
        fast={source: value / 2 for source, value in slow.items()},
        since={source: draw(st.floats(-100, 100, allow_nan=False)) for source in slow},
    )


def _close(left: PainSnapshot, right: PainSnapshot) -> bool:
    return left.at == right.at and all(
        math.isclose(left.slow.get(s, 0.0), right.slow.get(s, 0.0), rel_tol=1e-9, abs_tol=1e-9)
        for s in PainSource
    )


@given(snapshots(), snapshots(), snapshots())
def test_snapshot_merge_is_commutative_and_associative(
    a: PainSnapshot, b: PainSnapshot, c: PainSnapshot
) -> None:
    assert _close(a.merge(b), b.merge(a))
    assert _close(a.merge(b).merge(c), a.merge(b.merge(c)))
    assert a.merge(b).since == b.merge(a).since


@given(snapshots())
def test_snapshot_dict_round_trip(snapshot: PainSnapshot) -> None:
    assert PainSnapshot.from_dict(snapshot.to_dict()) == snapshot


@settings(max_examples=50)
@given(
    st.lists(st.tuples(st.floats(0, 5, allow_nan=False), st.floats(0.1, 20, allow_nan=False)), max_size=60)
)
def test_thyroid_pain_is_never_negative_and_state_matches_the_bands(
    signals: list[tuple[float, float]],
) -> None:
    config = ThyroidConfig()
    thyroid = Thyroid(config, origin="w", now=0)
    now = 0.0
    for gap, severity in signals:
        now += gap
        update = thyroid.feel(PainSource.AUTH_FAILURE, now=now, severity=severity)
        assert update.pain >= 0
        # Never calm at or above T, never below stressed at or above k·T.
        if update.pain >= config.threshold:
            assert update.state is not ThyroidState.CALM
        if update.pain >= config.overload_level:
            assert update.state is ThyroidState.OVERLOADED
    status = thyroid.status(now + 1000)
    assert status["pain"] >= 0


@given(st.lists(st.tuples(valences, arousals), min_size=2, max_size=8))
def test_agreement_is_within_zero_and_one(points: list[tuple[float, float]]) -> None:
    states = [MemberState(str(i), v, a) for i, (v, a) in enumerate(points)]
    agreement = state_agreement(states)
    assert agreement is not None
    assert -1e-12 <= agreement <= 1 + 1e-12


@given(st.lists(st.tuples(st.floats(0, 600, allow_nan=False), valences, arousals), min_size=1, max_size=20))
def test_smoothed_state_stays_within_the_reported_range(reports: list[tuple[float, float, float]]) -> None:
    smoother = EmotionSmoother(30)
    for at, valence, arousal in sorted(reports):
        smoothed = smoother.update("p", EmotionalState(valence, arousal, StateSource.SELF_REPORT, at))
    low = min(v for _, v, _ in reports)
    high = max(v for _, v, _ in reports)
    assert low - 1e-9 <= smoothed.valence <= high + 1e-9


@given(st.lists(st.tuples(st.floats(0, 100, allow_nan=False), valences, arousals), min_size=2, max_size=20))
def test_harmony_is_within_zero_and_one(points: list[tuple[float, float, float]]) -> None:
    result = harmony([StatePoint(t, v, a) for t, v, a in points], now=100, window_s=100)
    if result.score is not None:
        assert -1e-9 <= result.score <= 1 + 1e-9


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(
    st.sampled_from(list(EventType)),
    st.text(min_size=1, max_size=30),
    st.floats(-1e9, 1e9, allow_nan=False),
    st.dictionaries(st.text(max_size=8), json_values, max_size=5),
)
def test_any_event_round_trips_with_the_same_id(
    kind: EventType, subject: str, at: float, payload: dict[str, object]
) -> None:
    event = Event.create(kind, subject, at, payload)
    again = Event.from_json(event.to_json())
    assert again == event
    assert again.id == Event.create(kind, subject, at, dict(reversed(list(payload.items())))).id
