"""The sessions' deadlines, grouped into shared event-loop timers."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Generic, Protocol, TypeVar

log = logging.getLogger("resonance.worker.node")

TIMER_RESOLUTION_SECONDS = 0.1
LATE_FIRE_SECONDS = 0.5
"""A slot firing this late means the event loop itself ran late (a starved or stopped process)."""
READ_FIRST_SECONDS = 0.001
"""How far a late slot is put off: past this loop iteration's I/O poll (libuv runs timers before it)."""


class Timed(Protocol):
    client_id: str

    def timer_due(self) -> None: ...


T = TypeVar("T", bound=Timed)


class Timers(Generic[T]):
    """The sessions' deadlines (pings, pong and connect timeouts, expiry, presence
    refresh) in slots of ``resolution`` seconds, one event-loop timer per slot in
    use rather than one per connection: a connection costs a dict entry here
    instead of a libuv timer and its handle (~0.5 KiB). A deadline fires at most
    ``resolution`` late."""

    def __init__(self, resolution: float = TIMER_RESOLUTION_SECONDS) -> None:
        self.resolution = resolution
        self._slots: dict[int, dict[T, None]] = {}
        self._put_off: set[int] = set()  # slots whose deadlines wait for the sockets to be read first

    def _slot(self, deadline: float) -> int:
        return math.ceil(deadline / self.resolution)

    def add(self, conn: T, deadline: float) -> None:
        slot = self._slot(deadline)
        conns = self._slots.get(slot)
        if conns is None:
            conns = self._slots[slot] = {}
            loop = asyncio.get_running_loop()
            loop.call_later(max(0.0, slot * self.resolution - time.time()), self._fire, slot)
        conns[conn] = None

    def cancel(self, conn: T, deadline: float) -> None:
        conns = self._slots.get(self._slot(deadline))
        if conns is not None:
            conns.pop(conn, None)

    def _fire(self, slot: int) -> None:
        if slot not in self._put_off and time.time() - slot * self.resolution > LATE_FIRE_SECONDS:
            # The loop ran late, and libuv runs due timers before it reads the sockets: a pong (or a connect)
            # that arrived long before its deadline may still sit unread. Judge the peers after one read, as a
            # starved worker's Redis deadlines are excused (engines/loopwatch.py): the loop, not the client,
            # was slow. Once per slot, so a loop that stays late still fires it.
            self._put_off.add(slot)
            asyncio.get_running_loop().call_later(READ_FIRST_SECONDS, self._fire, slot)
            return
        self._put_off.discard(slot)
        for conn in self._slots.pop(slot, {}):
            try:
                conn.timer_due()
            except Exception:  # one connection's failure must not cost the others their timers
                log.exception("connection timer failed", extra={"client": conn.client_id})
