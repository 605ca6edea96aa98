"""The thyroid: decaying pain, mergeable snapshots, the state machine with hysteresis,
releases, adaptations, the status body and the disconnect-storm detector.

Default config in these tests: T = 10, h = 60 s, overloaded at 3·T = 30, relax below
0.6 × the entry level, minimum dwell 30 s.
"""

from __future__ import annotations

import itertools
import math

import pytest
from resonance_worker.domain.thyroid import (
    ATTRIBUTABLE,
    CALM_ADAPTATIONS,
    DEFAULT_SEVERITY,
    SUGGESTED_ACTION,
    Adaptations,
    Admission,
    DisconnectStormDetector,
    PainBudget,
    PainLedger,
    PainSignalError,
    PainSnapshot,
    PainSource,
    Thyroid,
    ThyroidConfig,
    ThyroidState,
    Trend,
    trend_of,
)

SERVER = PainSource.SERVER_ERROR
ENGINE = PainSource.ENGINE_TIMEOUT
NEO4J = PainSource.NEO4J_FAILURE
AUTH = PainSource.AUTH_FAILURE


def make(now: float = 0.0, **overrides: float) -> Thyroid:
    return Thyroid(ThyroidConfig(**overrides), origin="w1", now=now)  # type: ignore[arg-type]


# ----------------------------------------------------------------- decay and the ledger


def test_pain_halves_every_half_life() -> None:
    thyroid = make()
    thyroid.feel(AUTH, now=0, severity=8)
    assert thyroid.pain(0) == 8
    assert thyroid.pain(30) == pytest.approx(8 / math.sqrt(2))  # 5.6569
    assert thyroid.pain(60) == pytest.approx(4)
    assert thyroid.pain(120) == pytest.approx(2)
    # Time only moves forward: asking about the past answers with the latest view.
    assert thyroid.pain(30) == pytest.approx(2)


def test_default_severities_apply_when_none_is_given() -> None:
    thyroid = make()
    thyroid.feel(SERVER, now=0)
    thyroid.feel(PainSource.LIMIT_HIT, now=0)
    assert thyroid.pain(0) == DEFAULT_SEVERITY[SERVER] + DEFAULT_SEVERITY[PainSource.LIMIT_HIT] == 5.5


@pytest.mark.parametrize("severity", [0, -1, math.nan, math.inf, 100.5, True, "3"])
def test_bad_severity_is_refused_and_nothing_is_recorded(severity: object) -> None:
    thyroid = make()
    with pytest.raises(PainSignalError, match="severity"):
        thyroid.feel(SERVER, now=0, severity=severity)  # type: ignore[arg-type]
    assert thyroid.pain(0) == 0


def test_an_unknown_source_is_refused() -> None:
    with pytest.raises(ValueError, match="sneezing"):
        make().feel("sneezing", now=0, severity=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sneezing"):
        make().feel("sneezing", now=0)  # type: ignore[arg-type]
    thyroid = make()
    thyroid.feel("server_error", now=0)  # type: ignore[arg-type]  # the wire form is accepted
    assert thyroid.status(0)["sources"]["server_error"] == 5


def test_onset_is_when_a_source_rose_above_the_noise_floor_and_is_forgotten_when_it_fades() -> None:
    ledger = PainLedger("w1", half_life_s=60, noise_floor=0.5, now=0)
    ledger.record(AUTH, 1.0, now=10)
    ledger.record(AUTH, 1.0, now=20)  # already above the floor: onset stays 10
    assert ledger.snapshot(20).since == {AUTH: 10}
    # 2·2^(−10/60) + … decays below 0.5 after 60·log2(1.8906/0.5) ≈ 115 s more.
    assert ledger.snapshot(200).since == {}
    ledger.record(AUTH, 1.0, now=210)
    assert ledger.snapshot(210).since == {AUTH: 210}
    ledger.record(SERVER, 1.0, now=205)  # late: counts as the ledger's last time
    assert ledger.snapshot(210).since[SERVER] == 210


# ----------------------------------------------------------------- snapshots


def test_snapshots_merge_by_decaying_to_the_later_time_and_adding() -> None:
    a = PainSnapshot("a", 0.0, 60.0, {SERVER: 8.0}, {SERVER: 8.0}, {SERVER: -5.0})
    b = PainSnapshot(
        "b", 60.0, 60.0, {SERVER: 1.0, AUTH: 2.0}, {SERVER: 1.0, AUTH: 2.0}, {SERVER: 50.0, AUTH: 55.0}
    )
    merged = a.merge(b)
    assert merged.origin == "cluster"
    assert merged.at == 60
    assert merged.slow == {SERVER: pytest.approx(8 * 0.5 + 1), AUTH: 2.0}
    assert merged.fast[SERVER] == pytest.approx(8 / 16 + 1)  # fast half-life 15 s: 4 halvings
    assert merged.since == {SERVER: -5.0, AUTH: 55.0}
    assert merged.total() == pytest.approx(7)
    reverse = b.merge(a)
    assert reverse.slow == merged.slow
    assert reverse.since == merged.since


def test_merge_is_associative() -> None:
    a = PainSnapshot("a", 0.0, 60.0, {SERVER: 8.0}, {SERVER: 8.0}, {})
    b = PainSnapshot("b", 30.0, 60.0, {AUTH: 2.0}, {AUTH: 2.0}, {})
    c = PainSnapshot("c", 90.0, 60.0, {SERVER: 1.0}, {SERVER: 1.0}, {})
    left = a.merge(b).merge(c)
    right = a.merge(b.merge(c))
    for source in (SERVER, AUTH):
        assert left.slow[source] == pytest.approx(right.slow[source])
        assert left.fast[source] == pytest.approx(right.fast[source])


def test_snapshots_with_different_half_lives_do_not_merge() -> None:
    a = PainSnapshot("a", 0.0, 60.0, {}, {}, {})
    with pytest.raises(ValueError, match="half-lives"):
        a.merge(PainSnapshot("b", 0.0, 30.0, {}, {}, {}))


def test_decaying_to_an_earlier_time_keeps_the_snapshot_time() -> None:
    snapshot = PainSnapshot("a", 60.0, 60.0, {SERVER: 4.0}, {SERVER: 4.0}, {})
    assert snapshot.decayed_to(0.0).at == 60
    assert snapshot.decayed_to(0.0).slow[SERVER] == 4.0


def test_snapshot_round_trips_through_a_dict() -> None:
    thyroid = make()
    thyroid.feel(SERVER, now=3)
    thyroid.feel(AUTH, now=4)
    snapshot = thyroid.snapshot(10)
    again = PainSnapshot.from_dict(snapshot.to_dict())
    assert again == snapshot
    assert snapshot.to_dict()["slow"].keys() == {"auth_failure", "server_error"}


@pytest.mark.parametrize(
    "raw",
    [
        {},
        {"origin": 1, "at": 0, "half_life_s": 60, "slow": {}, "fast": {}, "since": {}},
        {"origin": "a", "at": "x", "half_life_s": 60, "slow": {}, "fast": {}, "since": {}},
        {"origin": "a", "at": math.inf, "half_life_s": 60, "slow": {}, "fast": {}, "since": {}},
        {"origin": "a", "at": 0, "half_life_s": 0, "slow": {}, "fast": {}, "since": {}},
        {"origin": "a", "at": 0, "half_life_s": 60, "slow": [], "fast": {}, "since": {}},
        {"origin": "a", "at": 0, "half_life_s": 60, "slow": {"nope": 1}, "fast": {}, "since": {}},
        {"origin": "a", "at": 0, "half_life_s": 60, "slow": {"auth_failure": -1}, "fast": {}, "since": {}},
        {
            "origin": "a",
            "at": 0,
            "half_life_s": 60,
            "slow": {"auth_failure": math.nan},
            "fast": {},
            "since": {},
        },
        {"origin": "a", "at": 0, "half_life_s": 60, "slow": {"auth_failure": None}, "fast": {}, "since": {}},
    ],
)
def test_malformed_snapshots_are_refused(raw: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - every malformation is a ValueError by contract
        PainSnapshot.from_dict(raw)


# ----------------------------------------------------------------- trend


def test_trend_of_a_single_burst_is_rising_then_falling() -> None:
    # Burst s at 0. At Δ: slow = s·2^(−Δ/60), fast = s·2^(−Δ/15); ratio = 4·2^(−3Δ/60).
    ledger = PainLedger("w", 60, 0.5, now=0)
    ledger.record(SERVER, 10, now=0)
    assert trend_of(ledger.snapshot(30), SERVER, 0.25) is Trend.RISING  # ratio √2 = 1.414
    assert trend_of(ledger.snapshot(40), SERVER, 0.25) is Trend.STEADY  # ratio 4·2^−2 = 1.0
    assert trend_of(ledger.snapshot(60), SERVER, 0.25) is Trend.FALLING  # ratio 0.5


def test_trend_of_a_steady_inflow_is_steady_and_of_nothing_is_steady() -> None:
    ledger = PainLedger("w", 60, 0.5, now=0)
    for second in range(601):  # one unit per second for 10 half-lives: ratio → 1.017
        ledger.record(AUTH, 1.0, now=second)
    snapshot = ledger.snapshot(600)
    assert trend_of(snapshot, None, 0.25) is Trend.STEADY
    assert trend_of(snapshot, SERVER, 0.25) is Trend.STEADY


# ----------------------------------------------------------------- the state machine


def test_crossing_the_threshold_releases_an_insight_and_relaxes_after_decay() -> None:
    thyroid = make()
    first = thyroid.feel(SERVER, now=0)  # 5
    assert (first.state, first.changed, first.released) == (ThyroidState.CALM, False, None)
    second = thyroid.feel(SERVER, now=0)  # 10 ≥ T
    assert second.state is ThyroidState.STRESSED
    assert second.changed
    assert not second.relaxed
    insight = second.released
    assert insight is not None
    assert (insight.top_source, insight.top_share, insight.since) == (SERVER, 1.0, 0)
    assert insight.trend is Trend.RISING
    assert insight.suggested_action == SUGGESTED_ACTION[SERVER]
    assert insight.adaptations == Adaptations(rate_limit_factor=0.5)
    assert thyroid.adaptations.rate_limit_factor == 0.5
    # t=30: 10/√2 = 7.07, inside the band (≥ 6): still stressed.
    assert thyroid.evaluate(30).state is ThyroidState.STRESSED
    # t=60: 5 < 0.6·10 and dwelt 60 s ≥ 30 s: calm again.
    relaxed = thyroid.evaluate(60)
    assert (relaxed.state, relaxed.relaxed, relaxed.released) == (ThyroidState.CALM, True, None)
    assert relaxed.pain == pytest.approx(5)
    assert thyroid.adaptations == CALM_ADAPTATIONS
    assert thyroid.state is ThyroidState.CALM
    assert len(thyroid.insights) == 1


def test_relaxing_waits_for_the_minimum_dwell() -> None:
    thyroid = make(min_dwell_s=120)
    thyroid.feel(SERVER, now=0, severity=10)
    assert thyroid.evaluate(90).state is ThyroidState.STRESSED  # pain 3.5 < 6 but only 90 s in the state
    assert thyroid.evaluate(120).state is ThyroidState.CALM


def test_overload_sheds_new_connections_with_a_retry_hint() -> None:
    thyroid = make()
    update = thyroid.feel(SERVER, now=0, severity=35)
    assert update.state is ThyroidState.OVERLOADED
    assert update.previous is ThyroidState.CALM
    adaptations = update.adaptations
    assert adaptations.rate_limit_factor == 0.25
    assert adaptations.shed_new_connections
    # Decay from 35 to the overload exit level 0.6·30 = 18 takes 60·log2(35/18) = 57.561 s.
    assert adaptations.retry_after_s == pytest.approx(57.561, abs=1e-3)
    # Stays overloaded inside its band: at t=40, 35·2^(−2/3) = 22.05 ≥ 18.
    assert thyroid.evaluate(40).state is ThyroidState.OVERLOADED
    # t=60: 17.5 < 18 → stressed (17.5 ≥ 10), a relaxation without a release.
    down = thyroid.evaluate(60)
    assert (down.state, down.relaxed, down.released) == (ThyroidState.STRESSED, True, None)
    assert not down.adaptations.shed_new_connections
    # t=100: 35·2^(−100/60) = 11.02 ≥ T, but entered stressed at 60: no change yet.
    assert thyroid.evaluate(100).state is ThyroidState.STRESSED
    # t=110: 9.82 < T but ≥ 6: still stressed; t=150: 6.19; t=160: 5.51 < 6 → calm.
    assert thyroid.evaluate(150).state is ThyroidState.STRESSED
    assert thyroid.evaluate(160).state is ThyroidState.CALM


def test_retry_hint_is_clamped_and_deep_overload_can_skip_to_calm() -> None:
    thyroid = make(retry_max_s=30)
    assert thyroid.feel(SERVER, now=0, severity=100).adaptations.retry_after_s == 30
    thyroid = make(overload_factor=1.5, relax_ratio=0.5, min_dwell_s=0)
    thyroid.feel(SERVER, now=0, severity=15)  # overloaded at 15
    # At t=60 pain 7.5: below T, but not below the overload exit 0.5·15 = 7.5: still overloaded.
    assert thyroid.evaluate(60).state is ThyroidState.OVERLOADED
    # t=61: 15·2^(−61/60) = 7.41 < 7.5 and ≥ 5 → stressed.
    assert thyroid.evaluate(61).state is ThyroidState.STRESSED
    thyroid = make(overload_factor=1.5, relax_ratio=0.5, min_dwell_s=0)
    thyroid.feel(SERVER, now=0, severity=15)
    assert thyroid.evaluate(120).state is ThyroidState.CALM  # 3.75 < 5: straight to calm


def test_retry_hint_has_a_floor_when_pain_sits_at_the_exit_level() -> None:
    thyroid = make(overload_factor=2.0, relax_ratio=0.9, retry_min_s=2)
    update = thyroid.feel(SERVER, now=0, severity=20)  # overloaded; exit level 18: 60·log2(20/18) = 9.120 s
    assert update.adaptations.retry_after_s == pytest.approx(9.120, abs=1e-3)
    # At t=9.2 pain ≈ 17.98 < 18 but only 9.2 s dwelt: still overloaded with the retry floor.
    assert thyroid.evaluate(9.2).adaptations.retry_after_s == 2


def test_stressed_rises_to_overloaded_with_a_second_release() -> None:
    thyroid = make()
    thyroid.feel(SERVER, now=0, severity=12)
    second = thyroid.feel(AUTH, now=1, severity=25)
    assert second.state is ThyroidState.OVERLOADED
    assert second.released is not None
    assert second.released.top_source is AUTH
    assert second.released.top_share == pytest.approx(25 / (12 * 2 ** (-1 / 60) + 25))
    assert [i.state for i in thyroid.insights] == [ThyroidState.OVERLOADED, ThyroidState.STRESSED]


def test_pain_hovering_around_the_threshold_does_not_flap() -> None:
    """Pain oscillates between ≈ 9.6 and 10.4 for 20 minutes: one release, never calm again."""

    def hover(thyroid: Thyroid) -> tuple[list[ThyroidState], int]:
        states, releases = [], 0
        for step in range(240):
            now = step * 5.0
            pain = thyroid.pain(now)
            if pain < 9.6:
                releases += thyroid.feel(AUTH, now=now, severity=10.4 - pain).released is not None
            update = thyroid.evaluate(now)
            releases += update.released is not None
            states.append(update.state)
        return states, releases

    steady = make()
    states, releases = hover(steady)
    assert states[0] is ThyroidState.STRESSED
    assert set(states) == {ThyroidState.STRESSED}
    assert releases == len(steady.insights) == 1
    # Control: without the band and the dwell the same input flaps, so the test above can fail.
    flappy = make(relax_ratio=0.999, min_dwell_s=0)
    flappy_states, flappy_releases = hover(flappy)
    changes = sum(1 for a, b in itertools.pairwise(flappy_states) if a is not b)
    assert changes > 50
    assert flappy_releases > 25


def test_circuits_open_for_a_failing_dependency_with_their_own_hysteresis() -> None:
    thyroid = make(min_dwell_s=1000)
    update = thyroid.feel(ENGINE, now=0, severity=12)  # redis pain 12 ≥ 0.5·10
    assert update.adaptations.open_circuits == frozenset({"redis"})
    thyroid.feel(NEO4J, now=0, severity=4)  # 4 < 5: neo4j stays closed
    assert thyroid.adaptations.open_circuits == frozenset({"redis"})
    # t=120: redis 3 (≥ 0.6·5 = 3 → stays open), neo4j 1.
    assert thyroid.evaluate(120).adaptations.open_circuits == frozenset({"redis"})
    # t=121: redis 2.97 < 3 → closes; still stressed (dwell).
    later = thyroid.evaluate(121)
    assert later.state is ThyroidState.STRESSED
    assert later.adaptations.open_circuits == frozenset()
    # A rising neo4j failure opens its circuit.
    assert thyroid.feel(NEO4J, now=121, severity=6).adaptations.open_circuits == frozenset({"neo4j"})


def test_no_circuit_while_calm_even_if_the_dependency_hurts() -> None:
    thyroid = make()
    assert thyroid.feel(ENGINE, now=0, severity=6).adaptations == CALM_ADAPTATIONS


def test_peers_add_to_the_view_and_own_origin_is_not_counted_twice() -> None:
    thyroid = make()
    peer = PainSnapshot("w2", 0.0, 60.0, {NEO4J: 8.0}, {NEO4J: 8.0}, {NEO4J: -10.0})
    own_echo = PainSnapshot("w1", 0.0, 60.0, {SERVER: 50.0}, {SERVER: 50.0}, {})
    assert thyroid.set_peers([peer, own_echo], now=0).state is ThyroidState.CALM
    update = thyroid.feel(AUTH, now=0, severity=2)
    assert update.state is ThyroidState.STRESSED
    assert update.released is not None
    assert update.released.top_source is NEO4J
    assert update.released.since == -10
    assert thyroid.snapshot(0).total() == 2  # what this worker publishes: its own pain only
    third = PainSnapshot("w3", 0.0, 60.0, {AUTH: 1.0}, {AUTH: 1.0}, {})
    thyroid.set_peers([peer, third], now=0)
    assert thyroid.pain(0) == pytest.approx(11)
    thyroid.set_peers([], now=0)
    assert thyroid.pain(0) == 2
    thyroid.set_peers([peer], now=0)
    assert thyroid.pain(60) == pytest.approx(5)  # (8 + 2) / 2


def test_status_has_exactly_the_documented_fields_with_insights_newest_first() -> None:
    thyroid = make(max_insights=2, min_dwell_s=0)
    assert thyroid.status(0) == {
        "pain": 0.0,
        "threshold": 10.0,
        "overload_factor": 3.0,
        "state": "calm",
        "sources": {source.value: 0.0 for source in PainSource},
        "insights": [],
        "updated_at": 0,
    }
    for start in (0, 200, 400):
        thyroid.feel(SERVER, now=start, severity=12)
        thyroid.evaluate(start + 100)
    thyroid.feel(PainSource.DISCONNECT_STORM, now=500, severity=11)
    status = thyroid.status(560)
    assert set(status) == {
        "pain",
        "threshold",
        "overload_factor",
        "state",
        "sources",
        "insights",
        "updated_at",
    }
    assert status["state"] == "stressed"
    # 12·2^(−560/60) + 12·2^(−360/60) + 12·2^(−160/60) + 11·2^(−60/60) = 0.0187 + 0.1875 + 1.8899 + 5.5
    assert status["pain"] == pytest.approx(7.596, abs=1e-3)
    assert status["sources"]["disconnect_storm"] == 5.5
    assert status["updated_at"] == 500
    assert [i["at"] for i in status["insights"]] == [500, 400]  # bounded to 2, newest first
    newest = status["insights"][0]
    assert newest["top_source"] == "disconnect_storm"
    assert newest["state"] == "stressed"
    assert newest["adaptations"] == {
        "rate_limit_factor": 0.5,
        "shed_new_connections": False,
        "retry_after_s": None,
        "open_circuits": [],
    }
    # Pain at 500: 11 + 12·(2^(−500/60) + 2^(−300/60) + 2^(−100/60)) = 15.19; share 11/15.19 = 72 %.
    assert newest["summary"].startswith(
        "stressed: pain 15.2 (threshold 10), mostly disconnect_storm (72%), rising since t=500; many clients"
    )


@pytest.mark.parametrize(
    "overrides",
    [
        {"threshold": 0},
        {"half_life_s": -1},
        {"min_dwell_s": -1},
        {"min_dwell_s": math.nan},
        {"overload_factor": 1},
        {"relax_ratio": 1},
        {"stressed_rate_factor": 0},
        {"circuit_fraction": 1.5},
        {"retry_min_s": 10, "retry_max_s": 5},
        {"max_insights": 0},
        {"trend_band": 1},
    ],
)
def test_config_refuses_what_cannot_work(overrides: dict[str, float]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each names its field; the type is the contract
        ThyroidConfig(**overrides)  # type: ignore[arg-type]


# ----------------------------------------------------------------- disconnect storms


def test_a_storm_needs_many_sources_not_one_address_reconnecting() -> None:
    detector = DisconnectStormDetector(count=3, window_s=10)
    assert not any(detector.record(t / 10, "ip:a") for t in range(100))  # one address: no storm
    assert not detector.record(11.0, "ip:b")
    assert detector.record(11.0, "ip:c")  # a, b and c within the window: three sources
    # The window moves on: the old entries of a leave one by one and a stays counted once.
    assert not detector.record(30.0, "ip:a") and not detector.record(30.0, "ip:a")
    assert detector.record(30.5, "ip:b") is False and detector.record(31.0, "ip:d")


def test_disconnect_storm_fires_once_and_rearms_when_the_window_quietens() -> None:
    detector = DisconnectStormDetector(count=3, window_s=10)
    assert [detector.record(t) for t in (0, 1, 2, 3)] == [False, False, True, False]
    # At 20 the window holds only one disconnect (≤ 3 // 2): re-armed.
    assert [detector.record(t) for t in (20, 21, 22)] == [False, False, True]


def test_disconnect_storm_detector_refuses_bad_settings() -> None:
    with pytest.raises(ValueError, match="count"):
        DisconnectStormDetector(count=1)
    with pytest.raises(ValueError, match="window_s"):
        DisconnectStormDetector(count=3, window_s=0)


# --------------------------------------------------------------------------- per-identity budgets
# Default cap = 0.25 × T = 2.5; flooding at 20 × 2.5 = 50 offered (the worked examples use 4 × 2.5 = 10).

PROTOCOL = PainSource.PROTOCOL_ERROR


def test_one_identity_adds_at_most_its_cap_however_much_it_hurts() -> None:
    thyroid = make()
    for i in range(1000):  # a garbage flood from one address, 1000 protocol errors within 1 s
        update = thyroid.feel(PROTOCOL, i / 1000, identities=["ip:203.0.113.9"])
    assert thyroid.pain(1.0) == pytest.approx(2.5, rel=1e-3)
    assert thyroid.state is ThyroidState.CALM and not update.adaptations.shed_new_connections
    assert update.flooding == {"ip:203.0.113.9"}
    assert thyroid.budget.refused == pytest.approx(1000 - 2.5, rel=1e-3)
    # A second address is a second budget: two attackers add two caps, no more.
    for i in range(1000):
        thyroid.feel(PROTOCOL, 1 + i / 1000, identities=["ip:198.51.100.1"])
    assert thyroid.pain(2.0) == pytest.approx(5.0, rel=2e-2)


def test_worked_example_of_admission_and_decay() -> None:
    budget = PainBudget(2.5, 60.0, flood_factor=4.0, max_identities=10, now=0.0)
    assert budget.charge(["ip:a"], 2.0, 0.0) == Admission(2.0, frozenset())
    # 0.5 of room left: a severity-1 signal admits 0.5 and the rest is refused.
    assert budget.charge(["ip:a"], 1.0, 0.0).admitted == pytest.approx(0.5)
    assert budget.admitted("ip:a", 0.0) == pytest.approx(2.5) and budget.offered("ip:a", 0.0) == 3.0
    # One half-life later half of the cap is free again: 2.5 · 2^-1 = 1.25 admitted, then 1.25 more.
    assert budget.charge(["ip:a"], 5.0, 60.0).admitted == pytest.approx(1.25)
    assert budget.offered("ip:a", 60.0) == pytest.approx(1.5 + 5.0)
    assert budget.refused == pytest.approx(0.5 + 3.75)
    # The tightest of a signal's identities decides; every one is charged.
    admission = budget.charge(["ip:a", "conn:1"], 1.0, 60.0)
    assert admission.admitted == 0.0
    assert budget.offered("conn:1", 60.0) == 1.0 and budget.admitted("conn:1", 60.0) == 0.0
    assert budget.charge(["conn:1"], 1.0, 60.0).admitted == 1.0  # conn:1 alone still has room
    # No identities: the budget does not apply.
    assert budget.charge([], 7.0, 60.0) == Admission(7.0, frozenset())


def test_flooding_is_named_and_wears_off() -> None:
    budget = PainBudget(2.5, 60.0, flood_factor=4.0, max_identities=10, now=0.0)
    for _ in range(9):
        assert not budget.charge(["conn:x", "ip:a"], 1.0, 0.0).flooding
    assert budget.charge(["conn:x", "ip:a"], 1.0, 0.0).flooding == {"conn:x", "ip:a"}
    assert budget.charge(["conn:y", "ip:a"], 1.0, 0.0).flooding == {"ip:a"}  # a new connection, same IP
    assert sorted(budget.flooding(0.0)) == ["conn:x", "ip:a"]
    assert budget.flooding(60.0) == []  # 11 · ½ < 10: no longer flooding, by decay alone


def test_the_system_sources_are_never_capped() -> None:
    assert {PainSource.ENGINE_TIMEOUT, PainSource.NEO4J_FAILURE, PainSource.DISCONNECT_STORM}.isdisjoint(
        ATTRIBUTABLE
    )
    thyroid = make()
    for _ in range(4):  # a Redis outage seen through one client's requests is still an outage
        thyroid.feel(ENGINE, 0.0, identities=["ip:a"])
    assert thyroid.pain(0.0) == pytest.approx(12.0) and thyroid.state is ThyroidState.STRESSED
    assert len(thyroid.budget) == 0


def test_many_identities_still_stress_the_worker() -> None:
    thyroid = make()
    for n in range(6):  # six addresses, each within its cap: 6 × 2 = 12 ≥ T
        thyroid.feel(AUTH, 0.0, severity=2.0, identities=[f"ip:10.0.0.{n}"])
    assert thyroid.state is ThyroidState.STRESSED
    assert thyroid.insights[0].top_source is AUTH


def test_the_budget_forgets_quiet_identities_and_stays_bounded() -> None:
    budget = PainBudget(2.5, 10.0, flood_factor=4.0, max_identities=3, now=0.0)
    for n in range(5):
        budget.charge([f"ip:{n}"], 1.0, 0.0)
    assert len(budget) == 3  # the least recently charged were forgotten
    assert budget.offered("ip:0", 0.0) == 0.0 and budget.offered("ip:4", 0.0) == 1.0
    budget.charge(["ip:4"], 1.0, 200.0)  # twenty half-lives: the others are pruned on the way
    assert len(budget) == 1


def test_budget_settings_are_validated() -> None:
    for name, bad in (("identity_share", 0.0), ("flood_factor", 0.5), ("max_identities", 0)):
        with pytest.raises(ValueError, match=name):
            ThyroidConfig(**{name: bad})  # type: ignore[arg-type]
    assert ThyroidConfig(threshold=8.0, identity_share=0.5).identity_cap == 4.0


def test_circuit_only_pain_opens_its_circuit_and_never_stresses() -> None:
    thyroid = make(circuit_only=frozenset({NEO4J}))
    for _ in range(20):  # 40 ≥ 3·T: would be overloaded
        update = thyroid.feel(NEO4J, 0.0)
    assert thyroid.state is ThyroidState.CALM and not update.adaptations.shed_new_connections
    assert update.adaptations.open_circuits == {"neo4j"} and update.adaptations.rate_limit_factor == 1
    assert thyroid.status(0.0)["sources"]["neo4j_failure"] == pytest.approx(40.0)
    # Other pain still counts alone, and the release names it, not the louder circuit-only source.
    for _ in range(3):
        update = thyroid.feel(SERVER, 0.0)
    assert thyroid.state is ThyroidState.STRESSED and update.pain == pytest.approx(15.0)
    assert thyroid.insights[0].top_source is SERVER and thyroid.insights[0].top_share == 1.0
    # Decayed below r × the opening level (0.6 × 5 = 3): the circuit closes, while calm too.
    calm = make(circuit_only=frozenset({NEO4J}))
    calm.feel(NEO4J, 0.0, severity=6.0)
    assert calm.adaptations.open_circuits == {"neo4j"}
    assert calm.evaluate(30.0).adaptations.open_circuits == {"neo4j"}  # 4.24: below 5, above 3
    assert calm.evaluate(61.0).adaptations == CALM_ADAPTATIONS  # 2.97 < 3
    with pytest.raises(ValueError, match="circuit_only"):
        ThyroidConfig(circuit_only=frozenset({SERVER}))
