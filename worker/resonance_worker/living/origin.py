"""Who caused a pain signal: the WebSocket request it came from, for the thyroid's budgets.

The transport's middleware around ``/connection/websocket`` runs each request inside
:func:`charged_to` a :class:`PainOrigin` (the client's address as the worker resolves it, and the
request's socket transport). Everything a connection does runs in that request's task or in tasks
and timers started from it, which copy the context, so the pain hooks need no extra argument to
say who hurt: :func:`current_origin` tells them. Pain from elsewhere (the engine's listener, the
loops, the server API) has no origin and is never capped.
"""

from __future__ import annotations

import contextvars
import itertools
from collections.abc import Reversible

from resonance_worker.living.roster import Client, Present


class PainOrigin:
    """One WebSocket request: its identities (``conn:<n>``, ``ip:<address>``, ``user:<id>``)."""

    __slots__ = ("_conn", "_looked", "cut_off", "ip", "number", "transport")  # one per connection

    _ids = itertools.count(1)

    def __init__(self, ip: str, transport: object) -> None:
        self.ip = ip
        self.transport = transport
        self.number = next(PainOrigin._ids)
        self.cut_off = False
        """Set once the thyroid disconnected this request's connection (it is cut off once)."""
        self._conn: Client | None = None
        self._looked = False

    def connection(self, present: Present) -> Client | None:
        """This request's connection in ``present.connections`` (searched once, newest first)."""
        if not self._looked and self.transport is not None:
            self._looked = True
            found = present.connections.values()  # a dict's: reversible without a copy
            for conn in reversed(found) if isinstance(found, Reversible) else list(found)[::-1]:
                if conn.transport is self.transport:
                    self._conn = conn
                    break
        return self._conn

    def identities(self, present: Present) -> list[str]:
        """The budget keys this request's pain is charged to (the user's once it signed in)."""
        keys = [f"conn:{self.number}"]
        if self.ip:
            keys.append(f"ip:{self.ip}")
        conn = self.connection(present)
        if conn is not None and conn.session.user:
            keys.append(f"user:{conn.session.user}")
        return keys


_ORIGIN: contextvars.ContextVar[PainOrigin | None] = contextvars.ContextVar("pain_origin", default=None)


def current_origin() -> PainOrigin | None:
    """The origin of pain felt now (None outside a WebSocket request)."""
    return _ORIGIN.get()


def charge_to(origin: PainOrigin | None) -> None:
    """From here on in the current context, pain is charged to ``origin``: for a context made for one
    connection and never left (the native WebSocket shell's, ``transport/wsnative.py``)."""
    _ORIGIN.set(origin)


class charged_to:  # noqa: N801 - used as a function: ``with charged_to(origin):``
    """Within the block (and the tasks it starts), pain is charged to ``origin`` (None: to nobody).

    A class, not a generator-based context manager: the middleware holds one for a WebSocket's whole
    life, and a slotted object is ~0.4 KiB a connection smaller than a suspended generator and its
    wrapper (``docs/benchmarks.md``, idle memory)."""

    __slots__ = ("_origin", "_token")

    def __init__(self, origin: PainOrigin | None) -> None:
        self._origin = origin
        self._token: contextvars.Token[PainOrigin | None] | None = None

    def __enter__(self) -> None:
        self._token = _ORIGIN.set(self._origin)

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _ORIGIN.reset(self._token)
            self._token = None
