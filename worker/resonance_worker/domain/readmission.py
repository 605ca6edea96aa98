"""Readmission: a client the worker itself sent away to reconnect is let back in while it sheds.

While the thyroid is overloaded the worker sheds new WebSocket handshakes (HTTP 503 +
``Retry-After``). Some disconnects are the worker's own request to come straight back:
3010 *insufficient state* (its position check found a subscription's stream gone or behind, e.g.
after Redis restarted empty or failed over) and 3011 *force reconnect*. A client sent away with one
of them is not new load — it held a connection a moment ago — and refusing it would turn the worker's
own resync into an outage for that client: the overload that sheds it comes from the same Redis
outage that emptied the stream, and it lasts minutes (the pain's half-life), while an SDK retries
with a backoff of up to 20 s. So each such disconnect leaves a *ticket* for the client's address,
good for one handshake within :data:`WINDOW_S`; shedding admits a handshake that takes one.

Tickets are per address (all the worker knows of a client at the handshake), so behind a NAT any
client of that address may take one; never more handshakes are admitted than clients were sent away.
They are this worker's: a client that reconnects to another worker meets that worker's shedding.
Pure: time is passed in as ``now`` (seconds).
"""

from __future__ import annotations

from collections import deque

READMIT_CODES = frozenset({3010, 3011})
"""Disconnect codes that ask the client to come straight back (insufficient state, force reconnect)."""

WINDOW_S = 60.0
"""How long a ticket waits for its client: above the SDKs' longest reconnect backoff (20 s), so a
client whose first attempt raced another client of its address still finds one."""

MAX_TICKETS = 100_000
"""Tickets held at once (memory bound); the oldest goes first."""


class Readmissions:
    """Tickets per address: :meth:`grant` one per client sent away, :meth:`take` one per handshake."""

    def __init__(self, window_s: float = WINDOW_S, max_tickets: int = MAX_TICKETS) -> None:
        if not window_s > 0:
            raise ValueError("window_s must be > 0")
        if max_tickets < 1:
            raise ValueError("max_tickets must be ≥ 1")
        self.window_s = window_s
        self.max_tickets = max_tickets
        self._order: deque[tuple[float, str]] = deque()  # (expiry, address), in grant order
        self._by_address: dict[str, deque[float]] = {}  # address → expiries of its unused tickets

    def grant(self, address: str, now: float) -> None:
        """One ticket for ``address`` (a client of it was sent away to reconnect at ``now``)."""
        if not address:
            return
        self._prune(now)
        if len(self._order) >= self.max_tickets:
            self._drop(*self._order.popleft())
        expiry = now + self.window_s
        self._order.append((expiry, address))
        self._by_address.setdefault(address, deque()).append(expiry)

    def take(self, address: str, now: float) -> bool:
        """Use one of ``address``'s tickets for a handshake at ``now``; False when it has none."""
        self._prune(now)
        tickets = self._by_address.get(address)
        if not tickets:
            return False
        tickets.popleft()  # the oldest; its entry in _order is skipped when it expires
        if not tickets:
            del self._by_address[address]
        return True

    def held(self, now: float) -> int:
        """Unused tickets at ``now``."""
        self._prune(now)
        return sum(len(tickets) for tickets in self._by_address.values())

    def _prune(self, now: float) -> None:
        while self._order and self._order[0][0] <= now:
            self._drop(*self._order.popleft())

    def _drop(self, expiry: float, address: str) -> None:
        tickets = self._by_address.get(address)
        if tickets and tickets[0] <= expiry:  # not taken yet (a taken ticket left its deque)
            tickets.popleft()
            if not tickets:
                del self._by_address[address]
