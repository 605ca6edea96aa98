"""The client protocol's replies as typed results (sans-I/O).

The session decides a result; a codec (``resonance_worker.domain.protocol`` for JSON) turns it
into a frame. Field names and meaning follow ``centrifugal/protocol`` ``client.proto``; what a
codec leaves out (``expires``/``ttl`` without expiry, the position of an unpositioned
subscription) is said per field. Results are slotted dataclasses but not frozen: one is built
for every reply, on the connect and subscribe path, where a frozen ``__init__`` costs several
times more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


class ClientInfoLike(Protocol):
    """Who published, joined or left (the engine's ``ClientInfo`` fits)."""

    @property
    def user(self) -> str: ...
    @property
    def client(self) -> str: ...
    @property
    def conn_info(self) -> bytes | None: ...
    @property
    def chan_info(self) -> bytes | None: ...


class PublicationLike(Protocol):
    """A publication (the engine's ``Publication`` fits)."""

    @property
    def data(self) -> bytes: ...
    @property
    def offset(self) -> int: ...
    @property
    def info(self) -> ClientInfoLike | None: ...
    @property
    def tags(self) -> dict[str, str]: ...


@dataclass(slots=True)
class SubscribeResult:
    ttl: int | None = None
    """Seconds until the subscription expires (None: it does not; ``expires`` is sent with it)."""
    positioned: bool = False
    """The subscription follows its stream: ``epoch`` and ``offset`` are sent only then."""
    recoverable: bool = False
    was_recovering: bool = False
    recovered: bool = False
    epoch: str = ""
    offset: int = 0
    publications: Sequence[PublicationLike] = ()


@dataclass(slots=True)
class ConnectResult:
    client: str
    version: str
    node: str = ""
    ping: int | None = None
    """Seconds between server pings, and the client must answer them (``pong``); None: no pings."""
    ttl: int | None = None
    subs: Mapping[str, SubscribeResult] = field(default_factory=dict)
    data: bytes | None = None
    """Raw JSON for the connect reply's ``data`` (the connection's feature flags)."""


@dataclass(slots=True)
class RefreshResult:
    client: str
    version: str
    ttl: int | None = None


@dataclass(slots=True)
class SubRefreshResult:
    ttl: int | None = None


@dataclass(slots=True)
class UnsubscribeResult:
    pass


@dataclass(slots=True)
class PublishResult:
    pass


@dataclass(slots=True)
class PingResult:
    pass


@dataclass(slots=True)
class PresenceResult:
    presence: Mapping[str, ClientInfoLike]
    """Client id -> who."""


@dataclass(slots=True)
class PresenceStatsResult:
    num_clients: int
    num_users: int


@dataclass(slots=True)
class HistoryResult:
    publications: Sequence[PublicationLike]
    epoch: str
    offset: int


@dataclass(slots=True)
class RpcResult:
    data: bytes | None = None
    """Raw JSON of what the RPC method returned (None: nothing)."""


Result = (
    ConnectResult
    | SubscribeResult
    | UnsubscribeResult
    | PublishResult
    | PresenceResult
    | PresenceStatsResult
    | HistoryResult
    | RpcResult
    | RefreshResult
    | SubRefreshResult
    | PingResult
)
