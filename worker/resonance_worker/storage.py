"""Where one worker keeps things: the engine (channels), the event log and the temporal graph.

Built once, from the settings, by :func:`build_storage` — the one place that decides which store
backs what. ``create_app`` builds it, starts it with the app and closes it at cleanup; the node
gets ``storage.engine``, the living core the whole :class:`Storage`.

==========  ====================================  ============================================
setting     engine                                event log
==========  ====================================  ============================================
``memory``  :class:`~.engines.MemoryEngine`       :class:`~.eventlog.MemoryEventLog` (bounded)
``redis``   :class:`~.engines.RedisEngine`        :class:`~.eventlog.redis.RedisEventLog`: one
            (wrapped for degraded mode if asked)  Redis Stream next to the engine's keys, on a
                                                  client of its own (its blocking reads never
                                                  hold the engine's pool)
==========  ====================================  ============================================

Both reach Redis through one :class:`~.redis_client.RedisConnector` (``RESONANCE_REDIS_MODE``:
one server, or the primary a set of Sentinels names, found again after a failover).

The graph (Neo4j) is there only when ``RESONANCE_NEO4J__URI`` is set and the living core is on:
it is the living core's projection of the event log. Everything that needs a store asks
:class:`Storage` for it rather than probing the engine's type, so a new backend (Redis Sentinel
or Cluster, another log) is a new branch of :func:`build_storage` and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from resonance_worker.engines import Engine, build_engine
from resonance_worker.engines.base import EngineEventHandler, PersonalStore
from resonance_worker.engines.docs import DocStore, MemoryDocStore, RedisDocStore
from resonance_worker.eventlog import EventLog, MemoryEventLog, Retention
from resonance_worker.eventlog.redis import RedisEventLog
from resonance_worker.redis_client import RedisConnector
from resonance_worker.settings import EngineKind, WorkerSettings

MEMORY_LOG_RETENTION = Retention(max_len=100_000)
"""One node's log in memory: the newest events only (the graph, if any, has projected the rest)."""
REDIS_LOG_RETENTION = Retention(max_len=1_000_000)
"""The cluster's durable log: about the newest million events stay in the stream."""


class Projection(Protocol):
    """The projector of the event log into the graph, as its runner sees it."""

    @property
    def failures(self) -> int:
        """Failed attempts since start (each is Neo4j pain)."""

    async def run(self) -> None:
        """Project forever (cancel to stop)."""


class GraphStore(Protocol):
    """The temporal graph, without importing neo4j: ``resonance_worker.graph.store`` implements it.

    Errors: :class:`~resonance_worker.errors.GraphError` (an ``EngineError``) when Neo4j fails or
    is away, :class:`~resonance_worker.errors.GraphQueryInputError` for a bad query argument.
    """

    @property
    def queries(self) -> frozenset[str]:
        """The names :meth:`query` answers (``timeline``, ``as_of``, ...)."""

    async def prepare(self) -> None:
        """Create the schema (idempotent); ``GraphError`` while Neo4j cannot be reached."""

    def projector(self, log: EventLog, consumer: str) -> Projection:
        """A projector reading ``log`` as ``consumer`` (unique per running projector)."""

    async def query(self, name: str, user: str, args: Mapping[str, Any]) -> Any:
        """Run query ``name`` for ``user``: a JSON-ready result."""

    async def export_user(self, user: str) -> dict[str, Any]:
        """The person's part of the graph (``graph.rights``), JSON-ready."""

    async def erase_user(self, user: str) -> dict[str, int]:
        """Delete it; how many of each went."""

    async def expire(self, *, emotions_before: float | None, graph_before: float | None) -> int:
        """Delete what is past its retention (epoch seconds; None: keep); how many went."""

    async def close(self) -> None:
        """Release the driver."""


class Closable(Protocol):
    async def close(self) -> None: ...


@dataclass(frozen=True)
class Storage:
    """The stores of one worker. Start it before serving, close it after."""

    engine: Engine
    event_log: EventLog
    graph: GraphStore | None = None
    owned: tuple[Closable, ...] = ()
    """What :meth:`close` releases besides the engine and the graph (the Redis log's client)."""
    docs: DocStore = field(default_factory=MemoryDocStore)
    """Shared Yjs documents (update logs, snapshots, awareness): next to the engine's keys."""

    @property
    def personal(self) -> PersonalStore:
        """The engine's data-rights side (the engine under a degraded-mode wrapper)."""
        engine: Any = getattr(self.engine, "inner", self.engine)
        return cast(PersonalStore, engine)

    @classmethod
    def around(cls, engine: Engine) -> Storage:
        """An engine of the caller's (tests, embedding) with a bounded in-memory event log."""
        return cls(engine, MemoryEventLog(retention=MEMORY_LOG_RETENTION))

    async def start(self, handler: EngineEventHandler) -> None:
        """Connect the engine and start delivering its events to ``handler`` (the node)."""
        await self.engine.start(handler)

    async def close(self) -> None:
        await self.engine.close()
        for resource in self.owned:
            await resource.close()
        if self.graph is not None:
            await self.graph.close()


def build_storage(settings: WorkerSettings) -> Storage:
    """The stores the settings ask for, not yet started (nothing connects before :meth:`Storage.start`)."""
    graph = _build_graph(settings) if settings.living.enabled and settings.neo4j.uri else None
    if settings.engine is EngineKind.REDIS:
        connector = RedisConnector.from_settings(settings)
        log = RedisEventLog.from_connector(
            connector, prefix=settings.redis_prefix, retention=REDIS_LOG_RETENTION
        )
        # Person documents (issue 15) on a client of the same connector: in Sentinel mode the primary too.
        engine = build_engine(settings, connector)
        redis: Any = getattr(engine, "inner", engine)  # under the degraded-mode wrapper
        # An update's append publishes it too, in the same script (one round trip; engines.docs).
        docs = RedisDocStore(
            connector.client(timeout=5.0, socket_timeout=None),
            prefix=settings.redis_prefix,
            framer=redis.fanout_frame,
        )
        return Storage(engine, log, graph, owned=(log, docs, connector), docs=docs)
    return Storage(build_engine(settings), MemoryEventLog(retention=MEMORY_LOG_RETENTION), graph)


def _build_graph(settings: WorkerSettings) -> GraphStore:
    # Imported here, not at the top: the graph package loads the neo4j driver, which a worker
    # without RESONANCE_NEO4J__URI (make run, the memory mode) never needs.
    from resonance_worker.graph.store import Neo4jGraphStore

    return Neo4jGraphStore(settings.neo4j)
