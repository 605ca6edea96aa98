"""Storage is built once from the settings: which engine, event log and graph each mode gets."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr
from resonance_worker.domain import events
from resonance_worker.engines import LocalFallbackEngine, MemoryEngine, RedisEngine
from resonance_worker.engines.docs import MemoryDocStore, RedisDocStore
from resonance_worker.errors import EngineError
from resonance_worker.eventlog import MemoryEventLog
from resonance_worker.eventlog.redis import RedisEventLog
from resonance_worker.graph.store import Neo4jGraphStore
from resonance_worker.living_settings import LivingSettings, Neo4jSettings
from resonance_worker.settings import Durability, EngineKind, RedisMode, WorkerSettings
from resonance_worker.storage import MEMORY_LOG_RETENTION, REDIS_LOG_RETENTION, Storage, build_storage

from tests.harness.redis import RedisServer


async def test_the_memory_mode_keeps_everything_in_this_process() -> None:
    storage = build_storage(WorkerSettings())
    assert isinstance(storage.engine, MemoryEngine) and isinstance(storage.event_log, MemoryEventLog)
    assert storage.event_log.retention == MEMORY_LOG_RETENTION
    assert storage.graph is None and storage.owned == ()
    assert isinstance(storage.docs, MemoryDocStore)
    await storage.close()


async def test_the_redis_mode_logs_next_to_the_engines_keys_on_a_client_of_its_own() -> None:
    settings = WorkerSettings(engine=EngineKind.REDIS, redis_prefix="p7", degraded_local_fanout=True)
    storage = build_storage(settings)
    assert isinstance(storage.engine, LocalFallbackEngine) and isinstance(storage.engine.inner, RedisEngine)
    log = storage.event_log
    assert isinstance(log, RedisEventLog) and log.key == "p7.events" and log.retention == REDIS_LOG_RETENTION
    docs = storage.docs  # shared documents: next to the engine's keys, on a client of their own
    assert isinstance(docs, RedisDocStore) and docs.prefix == "p7"
    connector = storage.engine.inner.connector
    assert storage.owned == (log, docs, connector)  # the connector closes last
    assert connector.mode is RedisMode.STANDALONE
    await storage.close()  # nothing was connected: closing is still clean


async def test_the_sentinel_mode_shares_one_connector_between_the_engine_and_the_log() -> None:
    settings = WorkerSettings(
        engine=EngineKind.REDIS,
        redis_mode=RedisMode.SENTINEL,
        redis_sentinels=["127.0.0.1:26379", "[::1]:26380"],
        redis_sentinel_service="svc",
        redis_durability=Durability.REPLICA,
    )
    storage = build_storage(settings)
    engine = storage.engine
    assert isinstance(engine, RedisEngine) and engine.durability is Durability.REPLICA
    connector = engine.connector
    assert connector.sentinels == (("127.0.0.1", 26379), ("::1", 26380)) and connector.service == "svc"
    assert storage.owned == (storage.event_log, storage.docs, connector)  # the documents too, via Sentinel
    await storage.close()


def test_sentinel_mode_needs_sentinel_addresses_that_parse() -> None:
    with pytest.raises(ValueError, match="needs redis_sentinels"):
        WorkerSettings(engine=EngineKind.REDIS, redis_mode=RedisMode.SENTINEL)
    with pytest.raises(ValueError, match="host:port"):
        build_storage(
            WorkerSettings(engine=EngineKind.REDIS, redis_mode=RedisMode.SENTINEL, redis_sentinels=["nohost"])
        )


async def test_the_cluster_mode_finds_the_cluster_from_its_seed_nodes() -> None:
    settings = WorkerSettings(
        engine=EngineKind.REDIS,
        redis_mode=RedisMode.CLUSTER,
        redis_url="redis://:pw@ignored:1/0",
        redis_cluster_nodes=["127.0.0.1:7000", "[::1]:7001"],
    )
    storage = build_storage(settings)
    engine = storage.engine
    assert isinstance(engine, RedisEngine) and engine.cluster
    assert engine.connector.cluster_nodes == (("127.0.0.1", 7000), ("::1", 7001))
    assert repr(engine.connector) == "RedisConnector(cluster via 2 seed nodes)"
    assert storage.owned == (storage.event_log, storage.docs, engine.connector)
    await storage.close()


def test_cluster_mode_needs_seed_nodes_and_a_brace_free_prefix() -> None:
    cluster = {"engine": EngineKind.REDIS, "redis_mode": RedisMode.CLUSTER}
    with pytest.raises(ValueError, match="needs redis_cluster_nodes"):
        WorkerSettings(**cluster)
    nodes = {"redis_cluster_nodes": ["127.0.0.1:7000"]}
    with pytest.raises(ValueError, match=r"without \{ or \}"):
        WorkerSettings(**cluster, **nodes, redis_prefix="a{b}")
    assert (
        WorkerSettings(**cluster, **nodes, redis_durability=Durability.REPLICA).redis_mode
        is RedisMode.CLUSTER
    )
    with pytest.raises(ValueError, match="host:port"):
        build_storage(WorkerSettings(**cluster, redis_cluster_nodes=["7000"]))


async def test_the_graph_comes_with_a_uri_and_the_living_core() -> None:
    graphless = build_storage(
        WorkerSettings(living=LivingSettings(enabled=False), neo4j=Neo4jSettings(uri="bolt://x:1"))
    )
    assert graphless.graph is None
    storage = build_storage(WorkerSettings(neo4j=Neo4jSettings(uri="bolt://127.0.0.1:1", database="g")))
    assert isinstance(storage.graph, Neo4jGraphStore) and storage.graph.database == "g"
    assert storage.graph.queries == {"timeline", "as_of", "transitions", "time_of_day", "partners"}
    await storage.close()


async def test_an_engine_of_ones_own_gets_a_bounded_memory_log() -> None:
    engine = MemoryEngine()
    storage = Storage.around(engine)
    assert storage.engine is engine and isinstance(storage.event_log, MemoryEventLog)
    await storage.start(None)  # type: ignore[arg-type]
    await storage.close()


@pytest.mark.redis
async def test_a_password_from_its_own_setting_reaches_a_password_protected_redis(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", password="s3cret/:@pw").start()
    try:
        plain_url = f"redis://{server.host}:{server.port}/0"
        settings = WorkerSettings(
            engine=EngineKind.REDIS, redis_url=plain_url, redis_password=SecretStr("s3cret/:@pw")
        )
        storage = build_storage(settings)
        try:
            await storage.engine.start()
            await storage.engine.ping()
            await storage.event_log.append(events.state_changed("ann", 1.0, {"valence": 0.0, "arousal": 0.5}))
        finally:
            await storage.close()
        refused = build_storage(WorkerSettings(engine=EngineKind.REDIS, redis_url=plain_url))
        try:
            await refused.engine.start()
            with pytest.raises(EngineError, match=r"(?i)auth"):
                await refused.engine.ping()
        finally:
            await refused.close()
    finally:
        server.stop()
