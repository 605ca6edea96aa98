"""What a session asks its shell to do (operations), and how the shell answers (outcomes).

The session queues an ``Op`` in ``Session.effects()``; the shell (``transport/node.py``) performs
it against the engine or the application and feeds back its outcome (at most one) with
``Session.complete(op, outcome, now)``:

- ``ConnectOp``: ``Connected`` (the stream of each server-side subscription);
- ``SubscribeOp``: ``StreamState``;
- ``PublishOp``, ``PresenceOp``, ``PresenceStatsOp``, ``HistoryOp``, ``RpcOp``: their reply,
  ``PublishResult``, ``PresenceResult``, ``PresenceStatsResult``, ``HistoryResult``, ``RpcResult``;
- any of these: ``Failed`` instead (an error reply, or a ``Disconnect`` closing the connection);
- ``UnsubscribeOp``, ``PresenceRefreshOp``: nothing; ``SendOp``: nothing, or ``Failed``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from resonance_worker.domain.channels import NamespaceOptions
from resonance_worker.domain.codes import Disconnect, ErrorCode
from resonance_worker.domain.consent import DataKind
from resonance_worker.domain.positions import Position
from resonance_worker.domain.results import PublicationLike, Result


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """The protocol's ClientInfo of this connection (in a channel)."""

    user: str
    client: str
    conn_info: bytes | None = None
    chan_info: bytes | None = None


@dataclass(eq=False)
class Op:
    """An operation the shell performs for the session, then answers. Compared by identity."""

    method: ClassVar[str]
    """The command it serves (metric and log label)."""
    runs_beside: ClassVar[bool] = False
    """May run beside the connection's other operations (an RPC may be slow); the rest run in
    order, as Centrifuge: a publish after a subscribe in the same frame sees the subscription."""

    cmd_id: int


@dataclass(eq=False)
class SubscribeOp(Op):
    """Register a local subscriber (buffering starts now), add presence, read
    the stream position (and the publications after ``since`` when recovering),
    then answer with its ``StreamState``."""

    method = "subscribe"

    channel: str
    options: NamespaceOptions
    info: PeerInfo
    since: Position | None = None
    positioned: bool = False
    recoverable: bool = False
    server_side: bool = False
    reject_unrecovered: bool = False
    expire_at: int | None = None


@dataclass(eq=False)
class ConnectOp(Op):
    """Count the user's connection (limit), do the server-side subscriptions,
    then answer ``Connected``."""

    method = "connect"

    user: str
    subscriptions: list[SubscribeOp] = field(default_factory=list)
    traceparent: str = ""
    """The client's W3C trace context from its connect data (empty: none)."""


@dataclass(eq=False)
class UnsubscribeOp(Op):
    """Forget a subscription: remove the local subscriber and presence, send a
    leave if the namespace has join/leave. Needs no answer."""

    method = "unsubscribe"

    channel: str
    options: NamespaceOptions
    info: PeerInfo


@dataclass(eq=False)
class PublishOp(Op):
    method = "publish"

    channel: str
    data: bytes
    info: PeerInfo
    options: NamespaceOptions


@dataclass(eq=False)
class PresenceOp(Op):
    method = "presence"

    channel: str


@dataclass(eq=False)
class PresenceStatsOp(Op):
    method = "presence_stats"

    channel: str


@dataclass(eq=False)
class HistoryOp(Op):
    method = "history"

    channel: str
    options: NamespaceOptions
    since: Position | None
    limit: int
    reverse: bool


@dataclass(eq=False)
class RpcOp(Op):
    method = "rpc"
    runs_beside = True

    rpc_method: str
    data: bytes | None
    user: str
    client: str
    consent: frozenset[DataKind] | None = None


@dataclass(eq=False)
class SendOp(Op):
    """An asynchronous message from the client (no reply)."""

    method = "send"

    data: bytes | None
    user: str
    client: str


@dataclass(eq=False)
class PresenceRefreshOp(Op):
    """Refresh this connection's presence in these channels (TTL keep-alive)."""

    method = "presence_refresh"

    entries: list[tuple[str, PeerInfo]]


# -- outcomes ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamState:
    """What the engine said when subscribing: the stream's top position and,
    when recovering, the publications after the client's position."""

    offset: int
    epoch: str
    publications: Sequence[PublicationLike] = ()


@dataclass(frozen=True, slots=True)
class Connected:
    """The connection is admitted; ``streams`` holds the ``StreamState`` of each server-side
    subscription, by channel."""

    streams: Mapping[str, StreamState] = field(default_factory=dict)
    data: bytes | None = None
    """Raw JSON for the connect reply's ``data`` (the connection's feature flags), or None."""


@dataclass(frozen=True, slots=True)
class Failed:
    """The operation failed: an error reply (``message`` overrides the code's own), or closing
    the connection with a ``Disconnect``."""

    outcome: ErrorCode | Disconnect
    message: str | None = None


Outcome = Connected | StreamState | Failed | Result
