"""Selfhood: pairing, home state, harmony and self-understanding, with hand-computed numbers."""

from __future__ import annotations

import math

import pytest
from resonance_worker.domain.selfhood import (
    BodySample,
    ReportPair,
    SelfhoodInputError,
    SelfReport,
    StatePoint,
    body_arousal_from_heart_rate,
    harmony,
    home_state,
    pair_reports,
    self_understanding,
)


def pair(reported: float, body: float, t: float = 0.0) -> ReportPair:
    return ReportPair(t=t, reported=reported, body=body, bpm=None, label=None)


# ----------------------------------------------------------------- inputs and pairing


def test_body_arousal_from_heart_rate() -> None:
    assert body_arousal_from_heart_rate(80, resting_bpm=60) == 0.5  # (80 − 60) / 40
    assert body_arousal_from_heart_rate(50, resting_bpm=60) == 0.0
    assert body_arousal_from_heart_rate(130, resting_bpm=60) == 1.0
    assert body_arousal_from_heart_rate(75, resting_bpm=60, span_bpm=30) == 0.5
    with pytest.raises(SelfhoodInputError):
        body_arousal_from_heart_rate(math.nan, 60)
    with pytest.raises(SelfhoodInputError):
        body_arousal_from_heart_rate(80, 60, span_bpm=0)


@pytest.mark.parametrize(
    "build",
    [
        lambda: SelfReport(math.nan, 0.5),
        lambda: SelfReport(0, 1.5),
        lambda: SelfReport(0, 0.5, valence=-2),
        lambda: SelfReport(0, True),
        lambda: BodySample(0, -0.1),
        lambda: BodySample(math.inf, 0.1),
        lambda: StatePoint(0, 0.0, 2.0),
        lambda: StatePoint(math.nan, 0.0, 0.5),
    ],
)
def test_bad_inputs_are_refused(build: object) -> None:
    with pytest.raises(SelfhoodInputError):
        build()  # type: ignore[operator]


def test_reports_pair_with_the_mean_of_nearby_body_samples() -> None:
    reports = [SelfReport(500, 0.9), SelfReport(100, 0.2, label="calm")]
    body = [BodySample(200, 0.1), BodySample(110, 0.8, bpm=100), BodySample(80, 0.6, bpm=90)]
    pairs = pair_reports(reports, body, tolerance_s=30)
    assert len(pairs) == 1  # nothing within 30 s of t=500
    (only,) = pairs
    assert (only.t, only.reported, only.label) == (100, 0.2, "calm")
    assert only.body == pytest.approx(0.7)
    assert only.bpm == pytest.approx(95)
    assert only.gap == pytest.approx(-0.5)
    assert only.to_dict() == {"t": 100, "reported": 0.2, "body": 0.7, "bpm": 95.0, "label": "calm"}
    without_bpm = pair_reports([SelfReport(200, 0.1)], body)
    assert without_bpm[0].bpm is None
    assert without_bpm[0].to_dict()["bpm"] is None
    assert pair_reports([SelfReport(0, 0.1)], []) == []


# ----------------------------------------------------------------- home state


def test_home_state_worked_example() -> None:
    # g = [0.9, 1.0, 0.6]: C = 0.8333, std = 0.16997 → S = 0.66007, home = 0.55006.
    pairs = [pair(0.2, 0.3, t=0), pair(0.5, 0.5, t=1), pair(0.8, 0.4, t=2)]
    home = home_state(pairs)
    assert home.coherence == pytest.approx(0.833333, abs=1e-6)
    assert home.stability == pytest.approx(0.660066, abs=1e-6)
    assert home.score == pytest.approx(0.550055, abs=1e-6)
    assert home.largest_gap == pairs[2]
    assert home.explanation == (
        "over 3 moments your reported arousal matched your body's to within 0.17 on average "
        "(coherence 0.83); the match was variable (stability 0.66); the widest gap was at t=2: "
        "you reported 0.80, your body showed 0.40"
    )
    assert home.to_dict()["score"] == 0.5501
    assert home.to_dict()["largest_gap"]["t"] == 2


def test_home_state_of_perfect_agreement_and_of_alternating_agreement() -> None:
    steady = home_state([pair(0.3, 0.3), pair(0.7, 0.7), pair(0.1, 0.1)])
    assert (steady.score, steady.coherence, steady.stability) == (1.0, 1.0, 1.0)
    assert "steady" in steady.explanation
    assert "widest gap" not in steady.explanation
    # g alternates 1 and 0: C = 0.5, std = 0.5 → S = 0 → home 0.
    swinging = home_state([pair(0, 0), pair(1, 0), pair(0.5, 0.5), pair(0, 1)])
    assert swinging.coherence == pytest.approx(0.5)
    assert swinging.stability == 0.0
    assert swinging.score == 0.0
    assert "unsteady" in swinging.explanation


def test_home_state_needs_enough_pairs() -> None:
    home = home_state([pair(0.2, 0.3)], min_pairs=3)
    assert (home.score, home.coherence, home.stability, home.largest_gap) == (None, None, None, None)
    assert home.explanation == "not enough paired moments yet (1 of 3)"
    assert home.to_dict()["largest_gap"] is None


# ----------------------------------------------------------------- harmony


def test_harmony_worked_example() -> None:
    # Two states, 10 s each: u = ±0.3, a = 0.5 → spread 0.3 → H = 1 − 0.3/√0.5 = 0.57574.
    result = harmony([StatePoint(0, 0.6, 0.5), StatePoint(10, -0.6, 0.5)], now=20, window_s=60)
    assert result.score == pytest.approx(0.575736, abs=1e-6)
    assert result.centre_valence == pytest.approx(0.0)
    assert result.centre_arousal == pytest.approx(0.5)
    assert result.spread == pytest.approx(0.3)
    assert (result.states, result.covered_s) == (2, 20)
    assert result.to_dict()["score"] == 0.5757


def test_harmony_weights_by_time_held_and_clips_to_the_window() -> None:
    # Window [0, 60]. The state from t=−100 holds until 30 (30 s); the one at 30 holds 30 s; t=70 is future.
    points = [StatePoint(-100, 1, 1), StatePoint(-200, -1, 0), StatePoint(30, 1, 1), StatePoint(70, -1, 0)]
    same = harmony(points, now=60, window_s=60)
    assert (same.score, same.states, same.covered_s) == (1.0, 2, 60)
    # Unequal time: (0.5, 1) for 45 s and (−0.5, 0) for 15 s: weights ¾, ¼ → variance per axis ¾·¼,
    # spread = √(2 · 3/16) = 0.6124 → H = 1 − 0.6124/0.7071 = 0.1340.
    skewed = harmony([StatePoint(0, 1, 1), StatePoint(45, -1, 0)], now=60, window_s=60)
    assert skewed.score == pytest.approx(1 - math.sqrt(2 * 3 / 16) / math.sqrt(0.5), abs=1e-9)
    assert skewed.centre_valence == pytest.approx(0.5)


def test_harmony_is_undefined_without_two_states_or_time() -> None:
    assert harmony([], now=0).score is None
    assert harmony([StatePoint(0, 0.5, 0.5)], now=10).score is None
    # Two states at the same instant as now: no time held.
    assert harmony([StatePoint(10, 0.5, 0.5), StatePoint(10, -0.5, 0.5)], now=10).score is None
    assert harmony([StatePoint(10, 0.5, 0.5)], now=10).to_dict()["score"] is None


# ----------------------------------------------------------------- self-understanding


def test_self_understanding_worked_example() -> None:
    # reported [.2 .6 .8 .4 .5], body [.4 .5 .9 .3 .6]: |gap| mean 0.12, bias −0.04,
    # r = 0.17 / √(0.2 · 0.212) = 0.825593 → U = ½·0.825593 + ½·0.88 = 0.852796.
    sessions = [
        [pair(0.2, 0.4), pair(0.6, 0.5)],
        [],
        [pair(0.8, 0.9), pair(0.4, 0.3), pair(0.5, 0.6)],
    ]
    result = self_understanding(sessions)
    assert result.tracking == pytest.approx(0.825593, abs=1e-6)
    assert result.mean_error == pytest.approx(0.12)
    assert result.bias == pytest.approx(-0.04)
    assert result.score == pytest.approx(0.852796, abs=1e-6)
    assert result.session_agreement == pytest.approx((0.85, 0.9))
    assert result.trend is None  # two sessions with data: no trend yet
    assert (result.pairs, result.sessions) == (5, 2)
    assert result.to_dict()["score"] == 0.8528


def _sessions_with_gaps(gaps: list[float]) -> list[list[ReportPair]]:
    return [[pair(0.5, 0.5 - gap), pair(0.5 - gap, 0.5)] for gap in gaps]


def test_self_understanding_trend_and_negative_tracking() -> None:
    improving = self_understanding(_sessions_with_gaps([0.4, 0.3, 0.2]))
    assert improving.session_agreement == pytest.approx((0.6, 0.7, 0.8))
    assert improving.trend == "improving"
    assert improving.tracking is not None
    assert improving.tracking < 0  # reports move against the body here
    assert improving.score == pytest.approx(0.5 * 0 + 0.5 * (1 - 0.3))
    assert self_understanding(_sessions_with_gaps([0.2, 0.3, 0.4])).trend == "declining"
    assert self_understanding(_sessions_with_gaps([0.3, 0.3, 0.31])).trend == "steady"


def test_self_understanding_without_tracking_or_enough_data() -> None:
    flat = self_understanding(
        [[pair(0.5, 0.1), pair(0.5, 0.2)], [pair(0.5, 0.3), pair(0.5, 0.4), pair(0.5, 0.5)]]
    )
    assert flat.tracking is None  # constant reports: no correlation
    assert flat.score == pytest.approx(1 - 0.2)
    thin = self_understanding([[pair(0.5, 0.1)], [pair(0.5, 0.2)]])
    assert (thin.score, thin.trend, thin.pairs, thin.sessions) == (None, None, 2, 2)
    assert thin.session_agreement == pytest.approx((0.6, 0.7))
    assert thin.to_dict()["tracking"] is None
