"""The interface every engine implements (the Centrifuge "broker + presence
manager" split, in one object).

An engine does three jobs for the nodes of a cluster:

- **fan-out**: a publication on any node reaches every node that has local
  subscribers of the channel (``subscribe`` / ``publish`` / the event handler);
- **history**: each channel is a stream with an ``epoch`` and monotonically
  increasing ``offset`` so clients can recover what they missed;
- **presence**: who is in a channel, with a TTL so a crashed node's clients expire.

The in-memory engine does this for one process; the Redis engine for many pods.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from resonance_worker.domain.channels import NamespaceOptions
from resonance_worker.domain.keys import SlotScope, UserKind


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """Who published, joined or left: the protocol's ``ClientInfo``."""

    user: str
    client: str
    conn_info: bytes | None = None  # raw JSON, passed through untouched
    chan_info: bytes | None = None  # raw JSON, passed through untouched


@dataclass(frozen=True, slots=True)
class StreamPosition:
    """A place in a channel's stream. A new ``epoch`` means the stream was lost
    (TTL expiry, Redis restart without persistence): offsets restart, and
    recovery across epochs is impossible."""

    offset: int
    epoch: str


@dataclass(frozen=True, slots=True)
class Publication:
    """One message in a channel. ``data`` is the raw JSON the publisher sent."""

    data: bytes
    offset: int = 0
    info: ClientInfo | None = None
    tags: dict[str, str] = field(default_factory=dict)
    time_ms: int = 0  # wall time of acceptance, for delivery-latency metrics


@dataclass(frozen=True, slots=True)
class HistoryOptions:
    """How much of a channel's stream to keep. ``size == 0`` keeps none (no
    history, no offsets): typing indicators, for example."""

    size: int
    ttl_seconds: float
    meta_ttl_seconds: float = 0.0  # how long the epoch outlives the last publication; 0 = engine default


def history_options(options: NamespaceOptions) -> HistoryOptions | None:
    """What a namespace keeps of its channels' streams (None: no history, no offsets)."""
    if not options.has_history:
        return None
    return HistoryOptions(
        size=options.history_size,
        ttl_seconds=options.history_ttl_seconds,
        meta_ttl_seconds=options.history_meta_ttl_seconds,
    )


@dataclass(frozen=True, slots=True)
class PublishResult:
    """Where the publication landed; ``duplicate`` when an idempotency key
    matched an earlier publish (nothing new was stored or sent)."""

    position: StreamPosition
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class PersonalData:
    """What an engine keeps about one person (``user.export``; ``domain.datarights`` says whose)."""

    publications: dict[str, list[Publication]]
    """Kept publications by channel."""
    presence: dict[str, dict[str, ClientInfo]]
    """Presence entries by channel, by client id."""
    person: dict[str, Any]
    """Person state by registered kind (``domain.keys.USER_KINDS``)."""


class PersonalStore(Protocol):
    """The data-rights side of an engine (the Redis and the memory engine implement it)."""

    async def personal_data(self, user: str) -> PersonalData:
        """Everything kept about ``user``."""
        ...

    async def erase_personal(self, user: str) -> dict[str, int]:
        """Remove it; how many of each went (``publications``, ``presence``, ``person_keys``)."""
        ...

    async def expire_history(self, namespace: str, older_than_ms: int) -> int:
        """Remove ``namespace``'s kept publications published before ``older_than_ms`` (wall clock)."""
        ...


class EngineEventHandler(Protocol):
    """What the node does with events arriving from the engine (from any node,
    including itself). Called on the event loop; must not block."""

    def on_publication(self, channel: str, publication: Publication, position: StreamPosition) -> None: ...

    def on_join(self, channel: str, info: ClientInfo) -> None: ...

    def on_leave(self, channel: str, info: ClientInfo) -> None: ...

    def on_control(self, payload: bytes) -> None:
        """Node-to-node commands (disconnect a user everywhere, and so on)."""

    def on_fanout_resumed(self) -> None:
        """Fan-out came back after a break (the Redis engine's pub/sub connection reconnected, after a
        restart or a failover): what was published meanwhile never reached this node, and a channel
        that went quiet since will show no gap to its subscribers."""


class Engine(Protocol):
    """Channel state shared by the clients of one node or of many pods."""

    name: str

    async def start(self, handler: EngineEventHandler | None = None) -> None:
        """Connect and start delivering events to ``handler``. Called once before serving."""

    async def close(self) -> None:
        """Stop background work and release connections. Safe to call twice."""

    async def ping(self) -> None:
        """Return if the engine can serve now; raise ``EngineError`` if not."""

    # -- fan-out --------------------------------------------------------------

    async def subscribe(self, channel: str) -> None:
        """Start receiving this channel's events on this node (first local subscriber)."""

    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving this channel's events on this node (last local subscriber left)."""

    async def publish(
        self,
        channel: str,
        data: bytes,
        *,
        info: ClientInfo | None = None,
        tags: dict[str, str] | None = None,
        history: HistoryOptions | None = None,
        idempotency_key: str | None = None,
        idempotency_ttl_seconds: float = 300.0,
    ) -> PublishResult:
        """Store (when ``history`` keeps any) and then fan out to every node.

        Returns only once the publication is stored, so an acknowledged publish
        is never lost while its history lives. A repeated ``idempotency_key``
        within its TTL returns the first result with ``duplicate=True`` and
        neither stores nor sends anything.
        """
        ...

    async def publish_join(self, channel: str, info: ClientInfo) -> None:
        """Tell every node that ``info`` joined ``channel``."""

    async def publish_leave(self, channel: str, info: ClientInfo) -> None:
        """Tell every node that ``info`` left ``channel``."""

    async def publish_control(self, payload: bytes) -> None:
        """Send a node-to-node command to every node (including this one)."""

    # -- history ----------------------------------------------------------------

    async def history(
        self,
        channel: str,
        *,
        since: StreamPosition | None = None,
        limit: int = 0,
        reverse: bool = False,
        meta_ttl_seconds: float = 0.0,
    ) -> tuple[list[Publication], StreamPosition]:
        """Publications of a channel and its current top position.

        ``since`` returns those after that offset (oldest first), for recovery;
        ``limit == 0`` returns only the top position, ``limit < 0`` everything
        kept. A ``since`` whose epoch differs from the current one returns no
        publications: the caller must report "not recovered".
        """
        ...

    async def history_with_presence(
        self,
        channel: str,
        info: ClientInfo,
        *,
        presence_ttl_seconds: float,
        since: StreamPosition | None = None,
        limit: int = 0,
        meta_ttl_seconds: float = 0.0,
    ) -> tuple[list[Publication], StreamPosition]:
        """A subscribe's engine work in one call: ``add_presence(channel, info, ttl_seconds=
        presence_ttl_seconds)``, then ``history`` (oldest first) - one round trip on a remote engine."""
        ...

    async def remove_history(self, channel: str) -> None:
        """Drop a channel's stream (its next publication starts a new epoch)."""

    # -- presence ---------------------------------------------------------------

    async def add_presence(self, channel: str, info: ClientInfo, *, ttl_seconds: float) -> None:
        """Record (or refresh) a client in a channel; it expires after ``ttl_seconds``."""

    async def remove_presence(self, channel: str, client_id: str) -> None:
        """Remove a client from a channel's presence."""

    async def leave_with_presence(self, channel: str, info: ClientInfo) -> None:
        """``remove_presence(channel, info.client)`` and ``publish_leave(channel, info)`` in one call
        (one round trip on a remote engine)."""

    async def presence(self, channel: str) -> dict[str, ClientInfo]:
        """Clients present in a channel, by client id (expired ones excluded)."""
        ...

    async def presence_stats(self, channel: str) -> tuple[int, int]:
        """Number of clients and of distinct users present in a channel."""
        ...

    # -- cluster-wide limits ------------------------------------------------------

    async def take_token(self, key: str, *, rate_per_second: float, burst: int) -> float:
        """Take one token from a token bucket shared by every node.

        Returns 0.0 when a token was taken, else the seconds until one is free.
        """
        ...

    async def take_slot(
        self, scope: SlotScope, subject: str, holder: str, *, limit: int, ttl_seconds: float
    ) -> bool:
        """Hold one of ``limit`` connection slots of a client address or a user across every node
        (``holder``: the connection's id); False when all are held. A slot not refreshed within
        ``ttl_seconds`` is free again (a node that died stops refreshing its connections' slots)."""
        ...

    async def release_slot(self, scope: SlotScope, subject: str, holder: str) -> None:
        """Free ``holder``'s slot."""
        ...

    async def refresh_slots(self, slots: Sequence[tuple[SlotScope, str, str]], *, ttl_seconds: float) -> None:
        """Keep the ``(scope, subject, holder)`` slots this node holds for another ``ttl_seconds``."""
        ...

    # -- a person's state (domain/keys.py: USER_KINDS) -----------------------------

    async def person_read(self, user: str, kinds: Sequence[UserKind]) -> dict[str, bytes | list[bytes]]:
        """The stored values of ``user``'s ``kinds`` that exist: a string kind's value, a list kind's
        items (oldest first)."""
        ...

    async def person_write(self, user: str, kind: UserKind, value: bytes, *, ttl_seconds: float) -> None:
        """Store a string kind's value for ``ttl_seconds``."""
        ...

    async def person_append(
        self, user: str, kind: UserKind, items: Sequence[bytes], *, max_items: int, ttl_seconds: float
    ) -> None:
        """Append to a list kind, keep the newest ``max_items``, expire the list after ``ttl_seconds``."""
        ...

    async def person_erase(self, user: str, kinds: Sequence[UserKind]) -> None:
        """Delete ``user``'s ``kinds``."""
        ...
