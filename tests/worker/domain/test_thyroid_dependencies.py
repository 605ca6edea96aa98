"""Engine pain follows the datastore's health, not the clients' retry rate (``DependencyWatch``).

A failed Redis call used to be 3 pain whatever the reason, so a 10 s outage hurt as much as clients
retried into it and a worker went on shedding for minutes after Redis came back. Now: a call refused
by the open circuit adds nothing, real failures count once per probe window, and a probe that
succeeds a window after the last failure drops the engine's pain (the state may step down at once).

Default config: T = 10, h = 60 s, overloaded at 30, dwell 30 s; window 1 s (the probe period).
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st
from resonance_worker.domain.circuit import CircuitBreaker
from resonance_worker.domain.thyroid import (
    DependencyWatch,
    PainSource,
    Thyroid,
    ThyroidConfig,
    ThyroidState,
)

ENGINE = PainSource.ENGINE_TIMEOUT
SERVER = PainSource.SERVER_ERROR
WINDOW = 1.0
SEVERITY = 3.0


def make(now: float = 0.0) -> Thyroid:
    return Thyroid(ThyroidConfig(dependency_window_s=WINDOW), origin="w1", now=now)


def engine_pain(thyroid: Thyroid, now: float) -> float:
    return thyroid.view(now).slow.get(ENGINE, 0.0)


def call_through(breaker: CircuitBreaker, thyroid: Thyroid, now: float) -> None:
    """One client call while Redis is down, as the engine makes it: refused while the circuit is open."""
    if breaker.allow(now):
        breaker.record_failure(now)
        thyroid.dependency_failed(ENGINE, now)
    else:
        thyroid.dependency_failed(ENGINE, now, refused=True)


times = st.floats(min_value=0.0, max_value=10.0, allow_nan=False)


@given(retries=st.lists(st.floats(min_value=0.01, max_value=1.99, allow_nan=False), max_size=300))
def test_n_retries_into_an_open_circuit_add_the_same_pain_as_one(retries: list[float]) -> None:
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout_s=2.0)
    once, many = make(), make()
    call_through(breaker, once, 0.0)  # the failure that opens the circuit
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout_s=2.0)
    call_through(breaker, many, 0.0)
    for t in sorted(retries):  # all inside the open period (reset after 2 s)
        call_through(breaker, many, t)
    assert (
        engine_pain(many, 2.0)
        == pytest.approx(engine_pain(once, 2.0))
        == pytest.approx(SEVERITY * 2 ** (-2.0 / 60))
    )


@given(failures=st.lists(times, min_size=1, max_size=500))
def test_real_failures_count_at_most_once_per_window(failures: list[float]) -> None:
    thyroid = make()
    counted = [t for t in sorted(failures) if thyroid.dependency_failed(ENGINE, t) is not None]
    assert counted and counted[0] == min(failures)
    assert all(later - earlier >= WINDOW for earlier, later in itertools.pairwise(counted))
    assert len(counted) <= 10.0 / WINDOW + 1  # a 10 s outage: at most 11 signals, however many calls
    assert engine_pain(thyroid, 10.0) <= SEVERITY * len(counted)


def test_the_same_outage_hurts_alike_at_1_and_at_1000_calls_per_second() -> None:
    slow, busy = make(), make()
    for tick in range(100):  # 10 s at 10 calls/s
        slow.dependency_failed(ENGINE, tick / 10)
    for tick in range(10_000):  # 10 s at 1000 calls/s
        busy.dependency_failed(ENGINE, tick / 1000)
    assert engine_pain(busy, 10.0) == pytest.approx(engine_pain(slow, 10.0))
    raw = make()  # what every failure counting in full did: pain tracked the call rate
    for tick in range(100):
        raw.feel(ENGINE, tick / 10)
    assert engine_pain(raw, 10.0) > 9 * engine_pain(slow, 10.0)


@given(
    calls=st.lists(times, min_size=1, max_size=300),
    refused=st.lists(st.booleans(), min_size=300, max_size=300),
    probe_phase=st.floats(min_value=0.0, max_value=0.999, allow_nan=False),
)
def test_a_10_s_outage_sheds_nobody_2_probe_windows_after_redis_returns(
    calls: list[float], refused: list[bool], probe_phase: float
) -> None:
    """Whatever the clients did during the outage (any call times, refused or not), the first probes
    after Redis returns at t = 10 drop the engine's pain: calm and admitting within 2 windows."""
    thyroid = make()
    probes = [probe_phase + k * WINDOW for k in range(14)]
    for t, is_refused in sorted(zip(calls, refused, strict=False)):
        thyroid.dependency_failed(ENGINE, t, refused=is_refused)
    for probe in probes:  # the thyroid's own probe failed every window of the outage
        if probe < 10.0:
            thyroid.dependency_failed(ENGINE, probe)
    assert thyroid.pain(10.0) <= SEVERITY * (10.0 / WINDOW + 1)
    for probe in probes:
        if probe >= 10.0:
            thyroid.dependency_recovered(ENGINE, probe)
    back = 10.0 + 2 * WINDOW
    assert engine_pain(thyroid, back) == 0.0
    assert thyroid.evaluate(back).state is ThyroidState.CALM
    assert thyroid.adaptations.shed_new_connections is False


def test_before_the_change_the_same_outage_shed_for_minutes() -> None:
    """The control: 100 failed calls in a 10 s outage (every one counted) overload the worker, and it
    still sheds 15 s after Redis is back (and for minutes more)."""
    old = make()
    for tick in range(100):
        old.feel(ENGINE, tick / 10)
    assert old.evaluate(25.0).state is ThyroidState.OVERLOADED and old.adaptations.shed_new_connections
    assert old.evaluate(100.0).state is ThyroidState.OVERLOADED


def test_an_overload_from_the_outage_ends_when_redis_answers_not_after_the_dwell() -> None:
    thyroid = make()
    for second in range(12):  # 12 windows of real failures: 36 - decay ≥ 30
        thyroid.dependency_failed(ENGINE, float(second))
    assert thyroid.evaluate(11.0).state is ThyroidState.OVERLOADED
    assert thyroid.dependency_recovered(ENGINE, 11.5) is None  # the last failure is under a window old
    update = thyroid.dependency_recovered(ENGINE, 12.0)
    assert update is not None and update.state is ThyroidState.CALM and update.relaxed
    assert not thyroid.adaptations.shed_new_connections
    assert thyroid.status(12.0)["sources"]["engine_timeout"] == 0.0
    assert thyroid.dependency_recovered(ENGINE, 13.0) is None  # nothing more to recover from


def test_a_real_overload_still_sheds_when_redis_recovers() -> None:
    thyroid = make()
    for _ in range(8):
        thyroid.feel(SERVER, 0.0)  # 40: the worker itself fails
    for second in range(5):
        thyroid.dependency_failed(ENGINE, float(second))
    assert thyroid.evaluate(5.0).state is ThyroidState.OVERLOADED
    update = thyroid.dependency_recovered(ENGINE, 6.0)
    assert update is not None and update.state is ThyroidState.OVERLOADED
    assert thyroid.adaptations.shed_new_connections
    assert engine_pain(thyroid, 6.0) == 0.0 and thyroid.pain(6.0) == pytest.approx(40 * 2 ** (-6 / 60))


def test_a_flaky_redis_that_fails_every_window_is_never_recovered_and_overloads() -> None:
    """Slow or flaky: calls keep failing between successful probes, so no window is clean."""
    thyroid = make()
    state = ThyroidState.CALM
    for step in range(40):
        now = step * 0.5
        thyroid.dependency_failed(ENGINE, now)
        assert thyroid.dependency_recovered(ENGINE, now + 0.25) is None
        state = thyroid.evaluate(now + 0.25).state
    assert state is ThyroidState.OVERLOADED


def test_recovery_drops_this_workers_engine_pain_not_its_peers() -> None:
    """Each worker drops its own pain when its probe succeeds, and shares the result at its next step."""
    thyroid = make()
    peer = Thyroid(ThyroidConfig(), origin="w2", now=0.0)
    peer.feel(ENGINE, 0.0, severity=12.0)
    thyroid.set_peers([peer.snapshot(0.0)], 0.0)
    thyroid.dependency_failed(ENGINE, 0.0)
    thyroid.dependency_recovered(ENGINE, 2.0)
    assert thyroid.snapshot(2.0).slow.get(ENGINE, 0.0) == 0.0
    assert engine_pain(thyroid, 2.0) == pytest.approx(12.0 * 2 ** (-2 / 60))


def test_a_dependency_watch_ignores_refusals_and_needs_a_clean_window() -> None:
    watch = DependencyWatch(window_s=1.0)
    assert not watch.answered(0.0)  # nothing failed: nothing to recover from
    assert not watch.failed(0.0, refused=True) and watch.failed_at is None
    assert watch.failed(0.0) and not watch.failed(0.9) and watch.failed(1.0)
    assert not watch.answered(1.5)
    assert watch.answered(2.0) and not watch.failing


def test_the_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="dependency_window_s"):
        ThyroidConfig(dependency_window_s=0.0)
