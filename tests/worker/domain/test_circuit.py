"""The circuit breaker: closed, open after consecutive failures, half-open trials, forced open."""

from __future__ import annotations

import pytest
from resonance_worker.domain.circuit import CircuitBreaker, CircuitState


def test_circuit_opens_after_consecutive_failures_and_a_success_resets_the_count() -> None:
    breaker = CircuitBreaker(failure_threshold=3, reset_timeout_s=10)
    breaker.record_failure(0)
    breaker.record_failure(1)
    breaker.record_success(2)  # resets
    breaker.record_failure(3)
    breaker.record_failure(4)
    assert breaker.state(4) is CircuitState.CLOSED
    assert breaker.allow(4)
    breaker.record_failure(5)
    assert breaker.state(5) is CircuitState.OPEN
    assert not breaker.allow(6)
    assert breaker.retry_after(6) == 9


def test_half_open_admits_trials_and_closes_on_success() -> None:
    breaker = CircuitBreaker(
        failure_threshold=1, reset_timeout_s=10, half_open_max_calls=2, success_threshold=2
    )
    breaker.record_failure(0)
    assert breaker.state(10) is CircuitState.HALF_OPEN
    assert breaker.retry_after(10) == 0
    assert breaker.allow(10)
    assert breaker.allow(10)
    assert not breaker.allow(10)  # both trial slots taken
    breaker.record_success(11)
    assert breaker.state(11) is CircuitState.HALF_OPEN
    breaker.record_success(11)
    assert breaker.state(11) is CircuitState.CLOSED
    assert breaker.allow(11)


def test_a_failed_trial_opens_the_circuit_again() -> None:
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout_s=10)
    breaker.record_failure(0)
    assert breaker.allow(10)
    breaker.record_failure(10.5)
    assert breaker.state(11) is CircuitState.OPEN
    assert breaker.retry_after(11) == pytest.approx(9.5)
    breaker.record_failure(12)  # failures while open change nothing
    breaker.record_success(12)
    assert breaker.retry_after(12) == pytest.approx(8.5)


def test_force_open_never_shortens_an_open_circuit() -> None:
    breaker = CircuitBreaker(reset_timeout_s=10)
    breaker.force_open(0)
    assert breaker.retry_after(0) == 10
    breaker.force_open(1, duration_s=2)  # 9 s remain: keep them
    assert breaker.retry_after(1) == 9
    breaker.force_open(2, duration_s=30)
    assert breaker.retry_after(2) == 30
    with pytest.raises(ValueError, match="duration_s"):
        breaker.force_open(3, duration_s=0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"failure_threshold": 0},
        {"half_open_max_calls": 0},
        {"success_threshold": 2, "half_open_max_calls": 1},
        {"reset_timeout_s": 0},
    ],
)
def test_circuit_breaker_refuses_bad_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        CircuitBreaker(**kwargs)  # type: ignore[arg-type]
