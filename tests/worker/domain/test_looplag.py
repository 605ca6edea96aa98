"""The loop's lag and the deadlines it excuses (pure: the loop's clock is passed in)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from resonance_worker.domain.looplag import DeadlineExcuse, LoopLag


def test_a_heartbeat_on_time_adds_no_lag_and_a_late_one_adds_its_lateness() -> None:
    lag = LoopLag()
    lag.expect(1.0)
    assert lag.beat(1.0) == 0.0
    lag.expect(1.05)
    assert lag.beat(1.8) == pytest.approx(0.75)
    assert lag.total(2.0) == pytest.approx(0.75)  # nothing pending


def test_a_heartbeat_that_is_due_and_has_not_run_counts_already() -> None:
    lag = LoopLag()
    lag.expect(1.05)
    assert lag.total(1.0) == 0.0
    assert lag.total(2.05) == pytest.approx(
        1.0
    )  # the loop is a second late for it, though it has not run yet


def test_a_deadline_with_no_lag_fails_when_due() -> None:
    lag = LoopLag()
    deadline = DeadlineExcuse(lag, start=10.0, seconds=2.0, hard_seconds=8.0)
    assert deadline.end == 12.0
    assert deadline.due(12.0) is None
    assert deadline.excused == 0.0 and not deadline.starved(12.0)


def test_a_deadline_moves_on_by_the_loops_lag_and_then_fails() -> None:
    lag = LoopLag()
    deadline = DeadlineExcuse(lag, start=10.0, seconds=2.0, hard_seconds=8.0)
    lag.expect(10.05)
    lag.beat(11.55)  # the loop was 1.5 s late while the call waited
    assert deadline.due(12.0) == pytest.approx(13.5)
    assert deadline.excused == pytest.approx(1.5) and deadline.starved(12.0)
    assert deadline.due(13.5) is None  # no more lag since: the wait is Redis's


def test_lag_below_a_tenth_of_the_deadline_is_noise() -> None:
    lag = LoopLag()
    deadline = DeadlineExcuse(lag, start=0.0, seconds=2.0, hard_seconds=8.0)
    lag.expect(0.05)
    lag.beat(0.2)
    assert deadline.due(2.0) is None
    assert not deadline.starved(2.0)


def test_lag_before_the_call_began_excuses_nothing() -> None:
    lag = LoopLag()
    lag.expect(0.05)
    lag.beat(5.0)
    deadline = DeadlineExcuse(lag, start=5.0, seconds=2.0, hard_seconds=8.0)
    assert deadline.due(7.0) is None


@given(st.lists(st.floats(min_value=0.0, max_value=3.0), min_size=1, max_size=40))
def test_a_deadline_never_passes_its_hard_end(lateness: list[float]) -> None:
    lag = LoopLag()
    deadline = DeadlineExcuse(lag, start=0.0, seconds=1.0, hard_seconds=4.0)
    now = 0.0
    for late in lateness:
        lag.expect(now + 0.05)
        now += 0.05 + late
        lag.beat(now)
        if now >= deadline.end:
            moved = deadline.due(now)
            if moved is None:
                break
            assert moved <= 4.0
            assert deadline.end == moved
    assert deadline.end <= 4.0
