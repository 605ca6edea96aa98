"""How late this process's event loop runs, and which deadlines that excuses.

A deadline on a call to a dependency (Redis) is meant to catch the dependency not answering. On a
starved machine the worker's own event loop can fall seconds behind: the answer sits in the socket
unread while the deadline, counted in wall time, passes — and the call is reported failed, five of
those open the circuit, and a healthy Redis is treated as a failing one (refused publishes, engine
pain, shedding). :class:`LoopLag` keeps the sum of a heartbeat's lateness; a deadline that comes due
asks :meth:`DeadlineExcuse.due` whether the loop's lag since the call began explains the wait, and is
moved on by that lag (up to a hard end) instead of failing the call.

Pure: the I/O shell (``engines/loopwatch.py``) schedules the heartbeat and passes the loop's clock in.
"""

from __future__ import annotations

EXCUSED_FRACTION = 0.1
"""Lag below this fraction of a deadline is noise: the deadline is not moved for it."""


class LoopLag:
    """The sum of a periodic heartbeat's lateness: how long the loop was busy elsewhere when it
    should have run the heartbeat."""

    __slots__ = ("_expected", "_total")

    def __init__(self) -> None:
        self._total = 0.0
        self._expected: float | None = None

    def expect(self, at: float) -> None:
        """The heartbeat is scheduled to run at ``at`` (loop time)."""
        self._expected = at

    def beat(self, now: float) -> float:
        """The heartbeat ran at ``now``; returns how late it was (seconds, ≥ 0)."""
        late = 0.0 if self._expected is None else max(0.0, now - self._expected)
        self._total += late
        self._expected = None
        return late

    def total(self, now: float) -> float:
        """The loop's lateness so far, including a heartbeat that is due and has not run yet (a
        callback due at the same time may run before it)."""
        pending = 0.0 if self._expected is None else max(0.0, now - self._expected)
        return self._total + pending


class DeadlineExcuse:
    """One call's deadline of ``seconds``, moved on by the loop's lag, never past ``hard_seconds``
    after the start."""

    __slots__ = ("_end", "_hard_end", "_lag", "_mark", "_seconds", "excused")

    def __init__(self, lag: LoopLag, start: float, seconds: float, hard_seconds: float) -> None:
        self._lag = lag
        self._mark = lag.total(start)
        self._seconds = seconds
        self._end = start + seconds
        self._hard_end = start + max(seconds, hard_seconds)
        self.excused = 0.0
        """The seconds the deadline was moved on (the loop's lag while the call waited)."""

    @property
    def end(self) -> float:
        return self._end

    def due(self, now: float) -> float | None:
        """The deadline came due at ``now``: the new end if the loop's lag explains the wait (the
        call keeps waiting), or None (the call has failed its deadline)."""
        lag = self._lag.total(now) - self._mark - self.excused
        if lag < EXCUSED_FRACTION * self._seconds or now >= self._hard_end:
            return None
        self.excused += lag
        self._end = min(now + lag, self._hard_end)
        return self._end

    def starved(self, now: float) -> bool:
        """Whether the loop ran late for at least half the deadline during the call: its failure
        says the worker was starved, not that the dependency failed."""
        return self._lag.total(now) - self._mark >= 0.5 * self._seconds
