"""Who is connected to this worker: the node writes the roster, the living core reads it.

Built in ``create_app`` before both, so neither needs the other to exist first: the node fills
``connections`` and ``by_user`` as clients come and go and sets ``draining``; the living core
reads them (a room drops a member whose connection is gone, a person absent long enough is
forgotten, a drain's disconnects are no storm) through the read-only :class:`Present` view.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Generic, Protocol, TypeVar

from resonance_worker.domain.codes import Disconnect


class SessionView(Protocol):
    @property
    def user(self) -> str: ...


class Client(Protocol):
    """What the living core reads of a connection (``transport.ws.Connection`` is one)."""

    @property
    def client_id(self) -> str: ...

    @property
    def transport(self) -> object:
        """The connection's socket transport: how a request's pain finds its connection."""

    @property
    def session(self) -> SessionView: ...

    def disconnect(self, reason: Disconnect) -> None: ...


class Present(Protocol):
    """The roster as the living core sees it: read only."""

    @property
    def connections(self) -> Mapping[str, Client]: ...

    @property
    def by_user(self) -> Mapping[str, Set[Client]]: ...

    @property
    def draining(self) -> bool: ...


C = TypeVar("C")


class Roster(Generic[C]):
    """The connections of this worker by client id and by user, and whether it is draining."""

    def __init__(self) -> None:
        self.connections: dict[str, C] = {}
        self.by_user: dict[str, set[C]] = {}
        self.draining = False
