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

from dataclasses import dataclass, field
from typing import Protocol


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


@dataclass(frozen=True, slots=True)
class PublishResult:
    """Where the publication landed; ``duplicate`` when an idempotency key
    matched an earlier publish (nothing new was stored or sent)."""

    position: StreamPosition
    duplicate: bool = False


class EngineEventHandler(Protocol):
    """What the node does with events arriving from the engine (from any node,
    including itself). Called on the event loop; must not block."""

    def on_publication(self, channel: str, publication: Publication, position: StreamPosition) -> None: ...

    def on_join(self, channel: str, info: ClientInfo) -> None: ...

    def on_leave(self, channel: str, info: ClientInfo) -> None: ...

    def on_control(self, payload: bytes) -> None:
        """Node-to-node commands (disconnect a user everywhere, and so on)."""


class Engine(Protocol):
    """Channel state shared by the clients of one node or of many pods."""

    name: str

    async def start(self, handler: EngineEventHandler | None = None) -> None:
        """Connect and start delivering events to ``handler``. Called once before serving."""

    async def close(self) -> None:
        """Stop background work and release connections. Safe to call twice."""

    async def ping(self) -> None:
        """Return if the engine can serve now; raise ``EngineError`` if not."""
