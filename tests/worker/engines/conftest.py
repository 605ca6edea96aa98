"""Engine fixtures: the same contract runs on the memory engine (with a clock the
test drives) and on the Redis engine against the run's real redis-server."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from resonance_worker.engines.base import ClientInfo, Engine, Publication, StreamPosition
from resonance_worker.engines.memory import MemoryEngine
from resonance_worker.engines.redis import RedisEngine
from resonance_worker.redis_client import RedisConnector
from resonance_worker.settings import EngineKind, RedisMode, WorkerSettings

from tests.harness.redis import RedisServer
from tests.harness.rediscluster import RedisClusterNodes


@dataclass
class Event:
    kind: str  # publication, join, leave, control, resumed
    channel: str = ""
    publication: Publication | None = None
    position: StreamPosition | None = None
    info: ClientInfo | None = None
    payload: bytes = b""


@dataclass
class Recorder:
    """An ``EngineEventHandler`` that keeps every event and lets a test wait for one."""

    events: list[Event] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def _add(self, event: Event) -> None:
        self.events.append(event)
        self._changed.set()

    def on_publication(self, channel: str, publication: Publication, position: StreamPosition) -> None:
        self._add(Event("publication", channel, publication=publication, position=position))

    def on_join(self, channel: str, info: ClientInfo) -> None:
        self._add(Event("join", channel, info=info))

    def on_leave(self, channel: str, info: ClientInfo) -> None:
        self._add(Event("leave", channel, info=info))

    def on_control(self, payload: bytes) -> None:
        self._add(Event("control", payload=payload))

    def on_fanout_resumed(self) -> None:
        self._add(Event("resumed"))

    def of(self, kind: str, channel: str | None = None) -> list[Event]:
        return [e for e in self.events if e.kind == kind and (channel is None or e.channel == channel)]

    async def wait_for(self, check: Callable[[], bool]) -> None:
        """Until ``check`` holds (events are delivered asynchronously by the Redis engine)."""
        async with asyncio.timeout(10):
            while not check():
                self._changed.clear()
                await self._changed.wait()


class FakeClock:
    """Monotonic and wall time that only move when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1_700_000_000.0 + self.now


@dataclass
class Node:
    engine: Engine
    events: Recorder


@dataclass
class EngineSetup:
    """The engines of one test and a way to let time pass for them."""

    kind: str
    nodes: list[Node]
    advance: Callable[[float], object]

    @property
    def engine(self) -> Engine:
        return self.nodes[0].engine

    @property
    def events(self) -> Recorder:
        return self.nodes[0].events

    async def let_pass(self, seconds: float) -> None:
        """Memory: move the fake clock. Redis: really wait (its TTLs run on the server's clock)."""
        result = self.advance(seconds)
        if asyncio.iscoroutine(result):
            await result


_prefixes = itertools.count()


def unique_prefix() -> str:
    return f"t{next(_prefixes)}"


def cluster_connector(cluster: RedisClusterNodes) -> RedisConnector:
    """Where the engine finds the run's Redis Cluster: its seed nodes (``redis_mode=cluster``)."""
    return RedisConnector(cluster.url, mode=RedisMode.CLUSTER, cluster_nodes=cluster.startup_nodes)


def tls_connector(server: RedisServer) -> RedisConnector:
    """Where the engine finds the run's TLS-only Redis: a ``redis://`` URL and the TLS settings, as
    the operator gives them (``RESONANCE_REDIS_TLS``, ``RESONANCE_REDIS_TLS_CA_FILE``)."""
    assert server.tls is not None
    settings = WorkerSettings(
        engine=EngineKind.REDIS,
        redis_url=server.url.replace("rediss://", "redis://"),
        redis_tls=True,
        redis_tls_ca_file=str(server.tls.ca),
    )
    return RedisConnector.from_settings(settings)


def redis_engine(request: pytest.FixtureRequest, kind: str, prefix: str) -> RedisEngine:
    """A Redis engine on the run's single Redis (``redis``), on its TLS-only Redis (``tls``) or on
    its Redis Cluster (``cluster``)."""
    if kind == "cluster":
        cluster: RedisClusterNodes = request.getfixturevalue("redis_cluster")
        return RedisEngine(cluster_connector(cluster), prefix=prefix)
    if kind == "tls":
        return RedisEngine(tls_connector(request.getfixturevalue("redis_tls_server")), prefix=prefix)
    server: RedisServer = request.getfixturevalue("redis_server")
    return RedisEngine(server.url, prefix=prefix)


REDIS_KINDS = [
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("cluster", marks=pytest.mark.redis),
    pytest.param("tls", marks=pytest.mark.redis),
]


@pytest.fixture(params=["memory", *REDIS_KINDS])
async def setup(request: pytest.FixtureRequest) -> AsyncIterator[EngineSetup]:
    """One engine (``setup.engine``) of each kind; Redis ones (one Redis, and a Redis Cluster) get
    their own key prefix."""
    if request.param == "memory":
        clock = FakeClock()

        def advance(seconds: float) -> None:
            clock.now += seconds

        memory = MemoryEngine(clock=clock, wall_clock=clock.wall)
        node = Node(memory, Recorder())
        await memory.start(node.events)
        try:
            yield EngineSetup("memory", [node], advance)
        finally:
            await memory.close()
        return
    engine = redis_engine(request, request.param, unique_prefix())
    node = Node(engine, Recorder())
    await engine.start(node.events)
    try:
        yield EngineSetup(request.param, [node], asyncio.sleep)
    finally:
        await engine.close()
        await engine.connector.aclose()


@pytest.fixture(params=REDIS_KINDS)
async def redis_nodes(request: pytest.FixtureRequest) -> AsyncIterator[list[Node]]:
    """Two Redis engines on one Redis (or one Redis Cluster), as two worker pods would have."""
    prefix = unique_prefix()
    nodes = [Node(redis_engine(request, request.param, prefix), Recorder()) for _ in range(2)]
    for node in nodes:
        await node.engine.start(node.events)
    try:
        yield nodes
    finally:
        for node in nodes:
            await node.engine.close()
