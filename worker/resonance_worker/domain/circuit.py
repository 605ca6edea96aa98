"""A circuit breaker: stop calling a dependency that keeps failing, try it again later.

Closed → open after ``failure_threshold`` consecutive failures; open → half-open after
``reset_timeout_s``; half-open lets ``half_open_max_calls`` trial calls through. Used by the
Redis engine (``RESONANCE_REDIS_CIRCUIT_*``), the graph projector, and the living core, whose
thyroid forces its ``redis`` and ``neo4j`` breakers open while it hurts. Pure: time is passed
in as ``now`` (seconds), so one breaker serves a monotonic clock or the wall clock alike.
"""

from __future__ import annotations

import math
from enum import StrEnum


def _positive(value: float, name: str) -> float:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Closed → open after ``failure_threshold`` consecutive failures; open → half-open
    after ``reset_timeout_s``; half-open lets ``half_open_max_calls`` trial calls through:
    ``success_threshold`` successes close it, one failure opens it again.

    Usage around a dependency call: ``if breaker.allow(now): try call; record_success /
    record_failure`` else fail fast with ``breaker.retry_after(now)``.
    """

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        reset_timeout_s: float = 10.0,
        half_open_max_calls: int = 1,
        success_threshold: int = 1,
    ) -> None:
        if failure_threshold < 1 or half_open_max_calls < 1 or success_threshold < 1:
            raise ValueError("thresholds and call counts must be ≥ 1")
        if success_threshold > half_open_max_calls:
            raise ValueError("success_threshold cannot exceed half_open_max_calls")
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = _positive(reset_timeout_s, "reset_timeout_s")
        self.half_open_max_calls = half_open_max_calls
        self.success_threshold = success_threshold
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_until = 0.0
        self._trials = 0
        self._successes = 0

    def state(self, now: float) -> CircuitState:
        """The state at ``now`` (an open circuit whose timeout passed is half-open)."""
        if self._state is CircuitState.OPEN and now >= self._opened_until:
            self._state = CircuitState.HALF_OPEN
            self._trials = 0
            self._successes = 0
        return self._state

    def allow(self, now: float) -> bool:
        """May a call go through now? In half-open this takes one of the trial slots."""
        state = self.state(now)
        if state is CircuitState.CLOSED:
            return True
        if state is CircuitState.OPEN:
            return False
        if self._trials < self.half_open_max_calls:
            self._trials += 1
            return True
        return False

    def record_success(self, now: float) -> None:
        state = self.state(now)
        if state is CircuitState.HALF_OPEN:
            self._successes += 1
            if self._successes >= self.success_threshold:
                self._state = CircuitState.CLOSED
                self._failures = 0
        elif state is CircuitState.CLOSED:
            self._failures = 0

    def record_failure(self, now: float) -> None:
        state = self.state(now)
        if state is CircuitState.HALF_OPEN:
            self._open(now, self.reset_timeout_s)
        elif state is CircuitState.CLOSED:
            self._failures += 1
            if self._failures >= self.failure_threshold:
                self._open(now, self.reset_timeout_s)

    def force_open(self, now: float, duration_s: float | None = None) -> None:
        """Open now (the thyroid asked); stays open at least ``duration_s`` (default: the reset timeout)."""
        duration = self.reset_timeout_s if duration_s is None else _positive(duration_s, "duration_s")
        self._open(now, max(duration, self._opened_until - now if self._state is CircuitState.OPEN else 0.0))

    def retry_after(self, now: float) -> float:
        """Seconds until an open circuit lets a trial through (0 when not open)."""
        if self.state(now) is CircuitState.OPEN:
            return self._opened_until - now
        return 0.0

    def _open(self, now: float, duration: float) -> None:
        self._state = CircuitState.OPEN
        self._opened_until = now + duration
        self._failures = 0
