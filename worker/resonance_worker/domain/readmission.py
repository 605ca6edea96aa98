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
client of that address may take one. A client may reconnect to another worker (a load balancer picks
any), so each worker also shares its newest unused tickets (:meth:`Readmissions.shared`, at most
:data:`SHARED_TICKETS`, in its pain snapshot in the engine) and honours its peers'
(:meth:`Readmissions.set_peers`): a handshake without a ticket of its own worker takes a peer's.
Workers do not tell each other which tickets they used, so one ticket admits at most one handshake
on each worker: never more than (workers × clients sent away) while the tickets last.
Pure: time is passed in as ``now`` (seconds).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping

READMIT_CODES = frozenset({3010, 3011})
"""Disconnect codes that ask the client to come straight back (insufficient state, force reconnect)."""

WINDOW_S = 60.0
"""How long a ticket waits for its client: above the SDKs' longest reconnect backoff (20 s), so a
client whose first attempt raced another client of its address still finds one."""

MAX_TICKETS = 100_000
"""Tickets held at once (memory bound); the oldest goes first."""

SHARED_TICKETS = 1_000
"""Tickets a worker shares with its peers at most (the newest): about 40 kB in its pain snapshot."""

Ticket = tuple[str, float]
"""A shared ticket: (address, expiry in seconds of the clock all workers share, the wall clock)."""


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
        self._peers: dict[str, list[tuple[str, float]]] = {}  # address → (peer, expiry) of peers' tickets
        self._used: dict[tuple[str, str, float], float] = {}  # peers' tickets used here → their expiry

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
        """Use one of ``address``'s tickets for a handshake at ``now`` — this worker's first, else a
        peer's (once here); False when it has none."""
        self._prune(now)
        tickets = self._by_address.get(address)
        if not tickets:
            return self._take_peers(address, now)
        tickets.popleft()  # the oldest; its entry in _order is skipped when it expires
        if not tickets:
            del self._by_address[address]
        return True

    def shared(self, now: float, limit: int = SHARED_TICKETS) -> list[Ticket]:
        """This worker's unused tickets at ``now`` for its peers, the newest ``limit`` (oldest first)."""
        self._prune(now)
        held = self.held(now)
        if not held or limit < 1:
            return []
        unused = {address: list(expiries) for address, expiries in self._by_address.items()}
        newest: list[Ticket] = []
        for expiry, address in reversed(self._order):  # newest first; taken tickets left their deque
            expiries = unused.get(address)
            if expiries and expiry in expiries:
                expiries.remove(expiry)
                newest.append((address, expiry))
                if len(newest) >= limit:
                    break
        return newest[::-1]

    def set_peers(self, peers: Mapping[str, Iterable[Ticket]], now: float) -> None:
        """Replace the peers' tickets with ``peers`` (peer → its shared tickets); expired ones are
        dropped, and a ticket already used here stays used."""
        self._peers = {}
        for peer, tickets in peers.items():
            for address, expiry in tickets:
                if address and expiry > now:
                    self._peers.setdefault(address, []).append((peer, expiry))
        self._used = {key: expiry for key, expiry in self._used.items() if expiry > now}

    def peer_tickets(self, now: float) -> int:
        """Peers' tickets not yet used here at ``now``."""
        return sum(
            1
            for address, tickets in self._peers.items()
            for peer, expiry in tickets
            if expiry > now and (peer, address, expiry) not in self._used
        )

    def _take_peers(self, address: str, now: float) -> bool:
        for peer, expiry in self._peers.get(address, ()):
            key = (peer, address, expiry)
            if expiry > now and key not in self._used:
                self._used[key] = expiry
                return True
        return False

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
