"""Resonance rooms: agreement, heart-rate synchrony, the publisher, patterns, the room monitor."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from resonance_worker.domain.resonance import (
    HeartRateSample,
    MemberState,
    PatternKind,
    PublishReason,
    ResonanceConfig,
    ResonanceInputError,
    ResonancePublisher,
    RoomMonitor,
    RoomPattern,
    combine,
    detect_agreement_trend,
    detect_leader_follower,
    detect_leader_follower_pairwise,
    heart_rate_synchrony,
    heart_rate_synchrony_pairwise,
    lagged_correlations,
    pearson,
    resample,
    room_resonance,
    state_agreement,
    state_agreement_pairwise,
)

SHORT = ResonanceConfig(min_overlap_s=4, window_s=60)


def hr(values: list[float], start: float = 0.0, step: float = 1.0) -> list[HeartRateSample]:
    return [HeartRateSample(start + i * step, v) for i, v in enumerate(values)]


# ----------------------------------------------------------------- agreement


def test_agreement_of_two_members_worked_example() -> None:
    # (v/2, a): (0.25, 0.5) and (−0.25, 0.5): distance 0.5; 1 − 0.5/√2 = 0.64645.
    states = [MemberState("a", 0.5, 0.5), MemberState("b", -0.5, 0.5)]
    assert state_agreement(states) == pytest.approx(0.646447, abs=1e-6)


def test_agreement_of_three_members_worked_example() -> None:
    # (0.5, 1), (0.5, 1), (−0.5, 0): distances 0, √2, √2 → mean 2√2/3 → agreement 1 − 2/3 = 1/3.
    states = [MemberState("a", 1, 1), MemberState("b", 1, 1), MemberState("c", -1, 0)]
    assert state_agreement(states) == pytest.approx(1 / 3)


def test_agreement_bounds_and_undefined_cases() -> None:
    assert state_agreement([MemberState("a", 0.3, 0.3), MemberState("b", 0.3, 0.3)]) == 1.0
    assert state_agreement([MemberState("a", 1, 1), MemberState("b", -1, 0)]) == pytest.approx(0.0)
    assert state_agreement([MemberState("a", 0, 0)]) is None
    assert state_agreement([]) is None


@pytest.mark.parametrize(("valence", "arousal"), [(1.5, 0.5), (0.0, -0.1), (math.nan, 0.5), (0.0, math.inf)])
def test_member_state_refuses_out_of_range(valence: float, arousal: float) -> None:
    with pytest.raises(ResonanceInputError):
        MemberState("a", valence, arousal)


@pytest.mark.parametrize(("t", "bpm"), [(math.nan, 60), (0, 10), (0, 300), (0, math.nan)])
def test_heart_rate_sample_refuses_nonsense(t: float, bpm: float) -> None:
    with pytest.raises(ResonanceInputError):
        HeartRateSample(t, bpm)


# ----------------------------------------------------------------- synchrony


def test_pearson_worked_example_and_degenerate_cases() -> None:
    # A dev [−1.6, .4, 2.4, .4, −1.6], B dev [−1, 0, 2, 0, −1]: Σ = 8, ΣA² = 11.2, ΣB² = 6 → 8/√67.2 = .9759
    a = np.array([60, 62, 64, 62, 60], dtype=float)
    b = np.array([70, 71, 73, 71, 70], dtype=float)
    assert pearson(a, b) == pytest.approx(0.975900, abs=1e-6)
    assert pearson(a[:2], b[:2]) is None
    assert pearson(a, np.full(5, 70.0)) is None


def test_synchrony_of_two_members_worked_example() -> None:
    series = {"b": hr([70, 71, 73, 71, 70]), "a": hr([60, 62, 64, 62, 60])}
    result = heart_rate_synchrony(series, now=4, config=SHORT)
    assert result.correlations == {("a", "b"): pytest.approx(0.975900, abs=1e-6)}
    assert result.score == pytest.approx(0.975900, abs=1e-6)


def test_synchrony_counts_opposite_trends_as_zero_and_averages_pairs() -> None:
    rising, falling = hr([60, 61, 62, 63, 64]), hr([80, 79, 78, 77, 76])
    result = heart_rate_synchrony({"a": rising, "b": rising, "c": falling}, now=4, config=SHORT)
    assert result.correlations[("a", "b")] == pytest.approx(1)
    assert result.correlations[("a", "c")] == pytest.approx(-1)
    assert result.score == pytest.approx((1 + 0 + 0) / 3)


def test_synchrony_resamples_irregular_series_onto_one_grid() -> None:
    # b is sampled every 2 s on the same line as a: after interpolation they are identical in shape.
    a = hr([60, 61, 62, 63, 64, 65, 66, 67, 68])
    b = [HeartRateSample(t, 90 + 0.5 * t) for t in (0, 2, 4, 6, 8)]
    assert heart_rate_synchrony({"a": a, "b": b}, now=8, config=SHORT).score == pytest.approx(1)


def test_synchrony_skips_short_overlap_flat_series_and_old_samples() -> None:
    config = ResonanceConfig(min_overlap_s=30, window_s=60)
    a = hr([60 + i % 5 for i in range(40)])  # t 0..39
    late = hr([70 + i % 5 for i in range(40)], start=20)  # overlap 20..39 = 19 s < 30
    flat = hr([70.0] * 40)
    assert heart_rate_synchrony({"a": a, "late": late}, now=39, config=config).score is None
    assert heart_rate_synchrony({"a": a, "flat": flat}, now=39, config=config).score is None
    assert heart_rate_synchrony({"a": a, "one": hr([70])}, now=39, config=config).score is None
    # At now=200 everything is older than the 60-s window.
    assert heart_rate_synchrony({"a": a, "b": a}, now=200, config=config).correlations == {}


def test_synchrony_needs_three_grid_points() -> None:
    config = ResonanceConfig(min_overlap_s=1, window_s=60, step_s=1)
    series = {"a": hr([60, 65]), "b": hr([70, 72])}
    assert heart_rate_synchrony(series, now=1, config=config).score is None


def test_resample_linear_and_hold() -> None:
    times = np.array([0.0, 10.0])
    values = np.array([1.0, 3.0])
    grid = np.array([-5.0, 0.0, 5.0, 10.0, 15.0])
    assert resample(times, values, grid).tolist() == [1.0, 1.0, 2.0, 3.0, 3.0]
    assert resample(times, values, grid, hold=True).tolist() == [1.0, 1.0, 1.0, 3.0, 3.0]


# ----------------------------------------------------------------- resonance


def test_room_resonance_combines_with_the_documented_weights() -> None:
    # 0.6 · 0.646447 + 0.4 · 0.975900 = 0.778228.
    states = [MemberState("a", 0.5, 0.5), MemberState("b", -0.5, 0.5)]
    series = {"a": hr([60, 62, 64, 62, 60]), "b": hr([70, 71, 73, 71, 70])}
    result = room_resonance("r1", states, series, now=4, config=SHORT)
    assert result.score == pytest.approx(0.778228, abs=1e-6)
    assert (result.members, result.synced_pairs) == (2, 1)
    assert result.to_dict() == {
        "room_id": "r1",
        "at": 4,
        "score": 0.7782,
        "agreement": 0.6464,
        "synchrony": 0.9759,
        "members": 2,
        "synced_pairs": 1,
    }


def test_missing_parts_renormalise_the_weights() -> None:
    assert combine(0.5, None, SHORT) == 0.5
    assert combine(None, 0.8, SHORT) == pytest.approx(0.8)
    assert combine(None, None, SHORT) is None
    only_states = ResonanceConfig(synchrony_weight=0)
    assert combine(0.5, 1.0, only_states) == 0.5
    result = room_resonance("r", [MemberState("a", 0, 0)], {}, now=0, config=SHORT)
    assert (result.score, result.agreement, result.synchrony) == (None, None, None)
    assert result.to_dict()["score"] is None


@pytest.mark.parametrize(
    "overrides",
    [
        {"agreement_weight": -1},
        {"agreement_weight": 0, "synchrony_weight": 0},
        {"step_s": 0},
        {"window_s": math.inf},
        {"min_overlap_s": 200},
        {"min_lag_correlation": 0},
    ],
)
def test_resonance_config_refuses_what_cannot_work(overrides: dict[str, float]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        ResonanceConfig(**overrides)


# ----------------------------------------------------------------- publisher


def test_publisher_first_cadence_and_change() -> None:
    publisher = ResonancePublisher(cadence_s=5, min_change=0.1, min_gap_s=1)
    decisions = [
        publisher.decide(0.0, 0.50),  # first
        publisher.decide(0.5, 0.90),  # big change but within the 1-s gap
        publisher.decide(1.0, 0.55),  # small change
        publisher.decide(2.0, 0.65),  # 0.15 from the last published 0.50
        publisher.decide(3.0, 0.70),  # 0.05
        publisher.decide(7.0, 0.70),  # cadence
        publisher.decide(8.0, None),  # defined → undefined is a change
        publisher.decide(9.0, None),
        publisher.decide(10.0, 0.2),
    ]
    assert decisions == [
        PublishReason.FIRST,
        None,
        None,
        PublishReason.CHANGE,
        None,
        PublishReason.CADENCE,
        PublishReason.CHANGE,
        None,
        PublishReason.CHANGE,
    ]


def test_publisher_refuses_bad_settings() -> None:
    with pytest.raises(ValueError, match="cadence"):
        ResonancePublisher(cadence_s=1, min_gap_s=2)


# ----------------------------------------------------------------- patterns


def test_convergence_worked_example() -> None:
    # Agreement 0.4, 0.5, 0.6, 0.7 at t = 0, 10, 20, 30: slope 0.01/s × span 30 s = +0.3.
    config = ResonanceConfig(window_s=60, min_overlap_s=4)
    history = [(0.0, 0.4), (10.0, 0.5), (20.0, 0.6), (30.0, 0.7)]
    pattern = detect_agreement_trend("r", history, now=30, config=config)
    assert pattern is not None
    assert pattern.kind is PatternKind.CONVERGENCE
    assert pattern.strength == pytest.approx(0.3)
    assert pattern.to_dict()["evidence"] == {
        "from_agreement": 0.4,
        "to_agreement": 0.7,
        "change": 0.3,
        "over_s": 30.0,
        "points": 4,
    }


def test_divergence_and_the_non_patterns() -> None:
    config = ResonanceConfig(window_s=60, min_overlap_s=4)
    falling = [(0.0, 0.9), (10.0, 0.8), (20.0, 0.6), (30.0, 0.5)]  # slope −0.014 × 30 = −0.42
    pattern = detect_agreement_trend("r", falling, now=30, config=config)
    assert pattern is not None
    assert pattern.kind is PatternKind.DIVERGENCE
    assert pattern.strength == pytest.approx(0.42)
    wobbly = [(0.0, 0.5), (10.0, 0.55), (20.0, 0.5), (30.0, 0.55)]  # slope 0.0015 × 30 = 0.045 < 0.15
    assert detect_agreement_trend("r", wobbly, now=30, config=config) is None
    assert detect_agreement_trend("r", falling[:2], now=30, config=config) is None  # < 3 points
    short = [(25.0, 0.1), (27.0, 0.5), (29.0, 0.9)]  # span 4 s < half the window
    assert detect_agreement_trend("r", short, now=30, config=config) is None


def test_lagged_correlation_finds_the_shift() -> None:
    x = np.array([0, 0, 1, 0, 0, 0, 0, 0, 0, 0], dtype=float)
    y = np.roll(x, 3)
    correlations = lagged_correlations(x, y, 4)
    assert correlations[3] == pytest.approx(1)
    assert max(correlations, key=lambda k: correlations[k]) == 3
    assert lagged_correlations(y, x, 4)[-3] == pytest.approx(1)


def test_lagged_correlation_edge_cases() -> None:
    assert lagged_correlations(np.array([1.0, 2.0]), np.array([2.0, 1.0]), 4) == {}  # < 3 points
    flat = np.zeros(10)
    assert lagged_correlations(flat, np.arange(10.0), 3) == {}
    # With 5 points only lags −2..2 leave ≥ 3 overlapping points.
    five = np.array([0.0, 1.0, 0.0, 2.0, 0.0])
    assert sorted(lagged_correlations(five, five, 4)) == [-2, -1, 0, 1, 2]
    assert lagged_correlations(five, five, 4)[0] == pytest.approx(1)


def test_leader_follower_worked_example() -> None:
    # a steps 0 → 1 at t=10, c at t=12, b at t=13: a leads b by 3 s and c by 2 s; c leads b by 1 s.
    series = {
        "a": [(0.0, 0.0), (10.0, 1.0)],
        "b": [(0.0, 0.0), (13.0, 1.0)],
        "c": [(0.0, 0.0), (12.0, 1.0)],
    }
    pattern = detect_leader_follower("r", series, now=40, config=SHORT)
    assert pattern is not None
    assert pattern.kind is PatternKind.LEADER_FOLLOWER
    assert pattern.evidence == {
        "leader": "a",
        "followers": {"b": {"lag_s": 3.0, "correlation": 1.0}, "c": {"lag_s": 2.0, "correlation": 1.0}},
    }
    assert pattern.strength == pytest.approx(1)


def test_leader_follower_on_interpolated_heart_rate_with_the_leader_second_in_order() -> None:
    # z's bump comes first; a repeats it 4 s later.
    bump = [70.0] * 10 + [75, 80, 75] + [70.0] * 27
    series = {
        "z": [(float(t), v) for t, v in enumerate(bump)],
        "a": [(t + 4.0, v) for t, v in enumerate(bump)],
    }
    pattern = detect_leader_follower("r", series, now=39, config=SHORT, hold=False)
    assert pattern is not None
    assert pattern.evidence["leader"] == "z"
    assert pattern.evidence["followers"]["a"]["lag_s"] == 4.0


def test_no_leader_when_changes_are_simultaneous_unrelated_or_too_few() -> None:
    together = {"a": [(0.0, 0.0), (10.0, 1.0)], "b": [(0.0, 0.0), (10.0, 1.0)]}
    assert detect_leader_follower("r", together, now=40, config=SHORT) is None
    still = {"a": [(0.0, 0.0), (1.0, 0.0)], "b": [(0.0, 1.0), (1.0, 1.0)]}
    assert detect_leader_follower("r", still, now=40, config=SHORT) is None
    too_far = {"a": [(0.0, 0.0), (10.0, 1.0)], "b": [(0.0, 0.0), (25.0, 1.0)]}  # 15 s > max lag 10 s
    assert detect_leader_follower("r", too_far, now=40, config=SHORT) is None
    lonely = {"a": [(0.0, 0.0), (10.0, 1.0)], "b": [(39.0, 0.0)]}
    assert detect_leader_follower("r", lonely, now=40, config=SHORT) is None
    ramps = {"a": [(0.0, 60.0), (40.0, 80.0)], "b": [(0.0, 70.0), (40.0, 90.0)]}  # steady slopes: no changes
    assert detect_leader_follower("r", ramps, now=40, config=SHORT, hold=False) is None
    short = {"a": [(30.0, 0.0), (35.0, 1.0)], "b": [(30.0, 0.0), (37.0, 1.0)]}  # 10 grid points < 2·10 + 4
    assert detect_leader_follower("r", short, now=40, config=SHORT) is None


# ----------------------------------------------------------------- the room monitor


def test_room_monitor_sees_members_converge_and_fires_each_pattern_once() -> None:
    config = ResonanceConfig(window_s=60, min_overlap_s=4, min_trend_change=0.15)
    monitor = RoomMonitor("r", config, ResonancePublisher(cadence_s=20, min_change=0.1, min_gap_s=1))
    monitor.update_state(MemberState("ann", -0.8, 0.9), at=0)
    monitor.update_state(MemberState("bo", 0.8, 0.1), at=0)
    ticks = []
    for step in range(0, 41, 2):
        t = float(step)
        # Both drift towards (0, 0.5) over 40 s.
        frac = t / 40
        monitor.update_state(MemberState("ann", -0.8 * (1 - frac), 0.9 - 0.4 * frac), at=t)
        monitor.update_state(MemberState("bo", 0.8 * (1 - frac), 0.1 + 0.4 * frac), at=t)
        ticks.append(monitor.tick(t))
    first = ticks[0].resonance
    last = ticks[-1].resonance
    assert first.agreement is not None
    assert last.agreement == pytest.approx(1)
    assert first.agreement == pytest.approx(1 - math.hypot(0.8, 0.8) / math.sqrt(2))  # 0.2
    assert ticks[0].publish is PublishReason.FIRST
    assert any(tick.publish is PublishReason.CHANGE for tick in ticks)
    convergences = [p for tick in ticks for p in tick.patterns if p.kind is PatternKind.CONVERGENCE]
    assert len(convergences) == 1  # edge-triggered: fires once while it lasts
    assert monitor.members == ["ann", "bo"]
    # A long quiet spell: the old points leave the window, nothing new fires.
    quiet = [monitor.tick(float(t)) for t in range(50, 201, 10)]
    assert all(tick.patterns == () for tick in quiet)
    assert quiet[-1].resonance.agreement == pytest.approx(1)
    # Then they drift apart again: divergence.
    later: list[RoomPattern] = []
    for step in range(0, 41, 2):
        frac = step / 40
        monitor.update_state(MemberState("ann", -0.8 * frac, 0.5 + 0.4 * frac), at=200.0 + step)
        monitor.update_state(MemberState("bo", 0.8 * frac, 0.5 - 0.4 * frac), at=200.0 + step)
        later.extend(monitor.tick(200.0 + step).patterns)
    assert [p.kind for p in later if p.kind is not PatternKind.LEADER_FOLLOWER] == [PatternKind.DIVERGENCE]


def test_room_monitor_windows_heart_rates_and_forgets_members() -> None:
    config = ResonanceConfig(window_s=30, min_overlap_s=10)
    monitor = RoomMonitor("r", config)
    for t in range(0, 100):
        monitor.add_heart_rate("ann", HeartRateSample(float(t), 60 + (t % 10)))
        monitor.add_heart_rate("bo", HeartRateSample(float(t), 80 + (t % 10)))
    tick = monitor.tick(99)
    assert tick.resonance.synchrony == pytest.approx(1)
    assert tick.resonance.agreement is None
    assert tick.resonance.score == pytest.approx(1)
    monitor.remove_member("bo")
    assert monitor.members == ["ann"]
    assert monitor.tick(100).resonance.score is None


# ----------------------------------------------------------------- vectorised = the pairwise definition


def test_the_worked_examples_give_the_same_under_both_definitions() -> None:
    states = [MemberState("a", 1, 1), MemberState("b", -1, 0), MemberState("c", 0.2, 0.4)]
    assert state_agreement(states) == pytest.approx(state_agreement_pairwise(states), abs=1e-12)
    assert state_agreement_pairwise(states[:1]) is None
    rising, falling = hr([60, 62, 64, 66, 68]), hr([68, 66, 64, 62, 60])
    for series in ({"a": rising, "b": rising, "c": falling}, {"a": rising, "flat": hr([70] * 5)}):
        fast = heart_rate_synchrony(series, now=4, config=SHORT)
        slow = heart_rate_synchrony_pairwise(series, now=4, config=SHORT)
        assert fast.correlations.keys() == slow.correlations.keys()
        assert (
            fast.score == pytest.approx(slow.score, abs=1e-12)
            if slow.score is not None
            else fast.score is None
        )
    # a leads b by 3 s and c by 2 s (the leader-follower worked example).
    steps = {
        "a": [(0.0, 0.0), (10.0, 1.0)],
        "b": [(0.0, 0.0), (13.0, 1.0)],
        "c": [(0.0, 0.0), (12.0, 1.0)],
    }
    fast_pattern = detect_leader_follower("r", steps, now=40, config=SHORT)
    slow_pattern = detect_leader_follower_pairwise("r", steps, now=40, config=SHORT)
    assert fast_pattern is not None and slow_pattern is not None
    assert fast_pattern.evidence == slow_pattern.evidence
    assert detect_leader_follower("r", {"a": steps["a"]}, now=40, config=SHORT) is None


def random_room(
    rng: random.Random, members: int
) -> tuple[dict[str, list[HeartRateSample]], dict[str, list[tuple[float, float]]]]:
    """Members that join at different times, some flat, most repeating one curve a few seconds late."""
    now = 500.0
    heart: dict[str, list[HeartRateSample]] = {}
    valence: dict[str, list[tuple[float, float]]] = {}
    for i in range(members):
        kind = rng.random()
        samples, t, base = [], now - rng.choice([60, 60, 40, 90, 25]), rng.uniform(60, 90)
        while t <= now:
            bpm = base if kind < 0.1 else base + 5 * math.sin(t / 7 + i) + rng.gauss(0, 1)
            samples.append(HeartRateSample(t, bpm))
            t += rng.uniform(0.5, 1.5)
        heart[f"m{i}"] = samples
        lag, points, t = rng.randint(0, 4), [], now - rng.choice([70, 60, 30])
        while t <= now:
            value = math.sin((t - lag) / 4) if kind < 0.6 else rng.uniform(-1, 1)
            points.append((t, 0.3 if kind > 0.9 else round(value, 1)))
            t += rng.choice([1, 1, 2, 3])
        valence[f"m{i}"] = points
    return heart, valence


def test_vectorised_equals_the_pairwise_definition_on_random_rooms() -> None:
    rng = random.Random(5)
    config = ResonanceConfig(window_s=60, min_overlap_s=20, max_lag_s=5)
    found = 0
    for room in range(80):
        heart, valence = random_room(rng, 2 + room % 9)
        fast, slow = (
            heart_rate_synchrony(heart, 500, config),
            heart_rate_synchrony_pairwise(heart, 500, config),
        )
        assert fast.correlations.keys() == slow.correlations.keys()
        assert all(abs(fast.correlations[k] - slow.correlations[k]) < 1e-9 for k in slow.correlations)
        assert (fast.score is None) == (slow.score is None)
        assert fast.score is None or slow.score is None or abs(fast.score - slow.score) < 1e-9
        for hold in (True, False):
            a = detect_leader_follower("r", valence, 500, config, hold=hold)
            b = detect_leader_follower_pairwise("r", valence, 500, config, hold=hold)
            assert (a is None) == (b is None)
            if a is not None and b is not None:
                found += 1
                assert a.evidence["leader"] == b.evidence["leader"]
                assert a.strength == pytest.approx(b.strength, abs=1e-9)
                for member, follower in b.evidence["followers"].items():
                    assert a.evidence["followers"][member]["lag_s"] == follower["lag_s"]
                    assert a.evidence["followers"][member]["correlation"] == pytest.approx(
                        follower["correlation"], abs=1e-4
                    )
    assert found > 40  # the rooms do have leaders to find


def test_a_pairwise_monitor_ticks_exactly_like_the_default_one() -> None:
    from bench.living_rooms import START, Room, same

    config = ResonanceConfig()
    room = Room(12, seed=3)
    monitors = [RoomMonitor("r", config, pairwise=True), RoomMonitor("r", config)]
    for k in range(150):
        room.feed(monitors, START - 120 + k)
        slow, fast = (monitor.tick(START - 120 + k) for monitor in monitors)
        assert same(slow, fast)
        assert slow.resonance.to_dict() == fast.resonance.to_dict()
