"""The event loop's heartbeat, and deadlines that a starved loop does not break
(the rules are ``domain/looplag.py``; this is their asyncio shell)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from resonance_worker.domain.looplag import DeadlineExcuse, LoopLag

HEARTBEAT_SECONDS = 0.05
"""How often the heartbeat runs: its lateness is the loop's lag (20 callbacks a second: nothing)."""


class LoopWatch:
    """A heartbeat on the running loop (:meth:`start` / :meth:`stop`) and :meth:`deadline`. Before
    :meth:`start`, or after :meth:`stop`, no lag is seen and a deadline is a plain one."""

    def __init__(self) -> None:
        self.lag = LoopLag()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if self._handle is None:
            self._loop = asyncio.get_running_loop()
            self._schedule()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.lag = LoopLag()  # a later start measures from then

    def _schedule(self) -> None:
        assert self._loop is not None
        at = self._loop.time() + HEARTBEAT_SECONDS
        self.lag.expect(at)
        self._handle = self._loop.call_at(at, self._beat)

    def _beat(self) -> None:
        assert self._loop is not None
        self.lag.beat(self._loop.time())
        self._schedule()

    @contextlib.asynccontextmanager
    async def deadline(self, seconds: float, hard_seconds: float) -> AsyncIterator[DeadlineExcuse]:
        """Like ``asyncio.timeout(seconds)``, but when it comes due while the loop has been running
        late, it moves on by that lag (up to ``hard_seconds`` in all): the awaited answer may be
        waiting unread. Raises ``TimeoutError`` as ``asyncio.timeout`` does."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(None) as timeout:
            excuse = DeadlineExcuse(self.lag, loop.time(), seconds, hard_seconds)

            handles: list[asyncio.TimerHandle] = []  # the pending check (one at a time)

            def due() -> None:
                moved_to = excuse.due(loop.time())
                if moved_to is None:
                    timeout.reschedule(loop.time())  # expire now: the call is cancelled, TimeoutError
                else:
                    handles[0] = loop.call_at(moved_to, due)

            handles.append(loop.call_at(excuse.end, due))
            try:
                yield excuse
            finally:
                handles[0].cancel()
