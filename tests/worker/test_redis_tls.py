"""TLS to Redis from the settings (``RESONANCE_REDIS_TLS*``), on the run's real TLS-only redis-server.

The engine contract runs over TLS too (``tests/worker/engines``, kind ``tls``); here: the other clients
the worker builds (event log, person documents, the backup's snapshot), a wrong CA, a plain-text server,
settings that cannot work, and Sentinel over TLS through a failover.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.exceptions import RedisError
from resonance_worker.backup.destination import DirectoryDestination
from resonance_worker.backup.jobs import backup
from resonance_worker.backup.plan import EVENTS, RDB
from resonance_worker.engines.base import HistoryOptions
from resonance_worker.engines.redis import RedisEngine
from resonance_worker.errors import EngineError
from resonance_worker.eventlog.redis import RedisEventLog
from resonance_worker.metrics import WorkerMetrics
from resonance_worker.redis_client import RedisConnector
from resonance_worker.settings import EngineKind, RedisMode, WorkerSettings
from resonance_worker.storage import build_storage

from tests.harness.redis import RedisServer
from tests.harness.rediscluster import RedisClusterNodes
from tests.harness.sentinel import SentinelRedis
from tests.harness.tls import make_tls
from tests.worker.engines.conftest import Node, Recorder
from tests.worker.eventlog.conftest import burst

pytestmark = pytest.mark.redis


def _settings(server: RedisServer, **overrides: object) -> WorkerSettings:
    assert server.tls is not None
    values: dict[str, object] = {
        "engine": EngineKind.REDIS,
        "redis_url": server.url.replace("rediss://", "redis://"),
        "redis_tls": True,
        "redis_tls_ca_file": str(server.tls.ca),
        "redis_prefix": "tls-test",
    }
    return WorkerSettings(**(values | overrides))  # type: ignore[arg-type]


async def test_event_log_person_documents_and_engine_all_speak_tls(redis_tls_server: RedisServer) -> None:
    storage = build_storage(_settings(redis_tls_server, redis_prefix="tls-storage"))
    await storage.start(handler=None)  # type: ignore[arg-type]
    try:
        log = storage.event_log
        assert isinstance(log, RedisEventLog)
        await log.setup()
        written = burst(3, person="tls-ann")
        ids = await storage.event_log.append_many(written)
        assert len(ids) == 3
        read = await storage.event_log.read_new("tls-reader", count=10)
        assert [entry.event for entry in read] == written
        assert await storage.docs.append("doc", b"update", limit=10, ttl_seconds=60) == 1
        assert (await storage.docs.load("doc", 0)).updates == [b"update"]
        published = await storage.engine.publish("tls-room", b"hi", history=HistoryOptions(10, 60))
        assert published.position.offset == 1
    finally:
        await storage.close()
    # What was written went to the TLS server (read back with the CA).
    assert redis_tls_server.tls is not None
    check = aioredis.Redis.from_url(redis_tls_server.url, ssl_ca_certs=str(redis_tls_server.tls.ca))
    try:
        assert await check.xlen("tls-storage.events") == 3
    finally:
        await check.aclose()


async def test_a_wrong_ca_is_refused_with_the_reason_and_never_falls_back_to_plain_text(
    redis_tls_server: RedisServer, tmp_path: Path
) -> None:
    other = make_tls(tmp_path / "other-ca")  # a CA that did not sign the server's certificate
    connector = RedisConnector.from_settings(_settings(redis_tls_server, redis_tls_ca_file=str(other.ca)))
    engine = RedisEngine(connector, prefix="tls-wrong-ca", timeout=1.0)
    await engine.start()
    try:
        with pytest.raises(EngineError) as refused:
            await engine.publish("room", b"never stored", history=HistoryOptions(10, 60))
        assert "certificate verify failed" in str(refused.value)
    finally:
        await engine.close()
        await connector.aclose()
    # Nothing reached the server.
    assert redis_tls_server.tls is not None
    check = aioredis.Redis.from_url(redis_tls_server.url, ssl_ca_certs=str(redis_tls_server.tls.ca))
    try:
        assert await check.keys("tls-wrong-ca*") == []
    finally:
        await check.aclose()


async def test_tls_settings_against_a_plain_text_server_fail_rather_than_speak_plain_text(
    redis_server: RedisServer, redis_tls_server: RedisServer
) -> None:
    assert redis_tls_server.tls is not None
    settings = WorkerSettings(
        engine=EngineKind.REDIS,
        redis_url=redis_server.url,
        redis_tls=True,
        redis_tls_ca_file=str(redis_tls_server.tls.ca),
    )
    connector = RedisConnector.from_settings(settings)
    assert connector.url.startswith("rediss://")
    client = connector.client(timeout=1.0, socket_timeout=1.0)
    try:
        with pytest.raises(RedisError):  # the TLS handshake gets no answer: a timeout, never a PONG
            await client.ping()
    finally:
        await client.aclose()


async def test_a_backup_over_tls_snapshots_the_data_and_the_event_log(
    redis_tls_server: RedisServer, tmp_path: Path
) -> None:
    settings = _settings(redis_tls_server, redis_prefix="tls-backup")
    storage = build_storage(settings)
    assert isinstance(storage.event_log, RedisEventLog)
    await storage.event_log.setup()
    await storage.event_log.append_many(burst(2, person="tls-bo"))
    await storage.close()
    connector = RedisConnector.from_settings(settings)
    try:
        result = await backup(
            connector,
            DirectoryDestination(tmp_path, "demo"),
            cluster="demo",
            prefix="tls-backup",
            retention=None,
        )
    finally:
        await connector.aclose()
    assert result.manifest.files[RDB].bytes > 0
    events = tmp_path / "demo" / result.id / EVENTS
    with gzip.open(events, "rt") as lines:
        assert len([json.loads(line) for line in lines]) == 2


def test_tls_settings_that_cannot_work_are_refused() -> None:
    with pytest.raises(ValidationError, match="redis_tls_cert_file and redis_tls_key_file go together"):
        WorkerSettings(engine=EngineKind.REDIS, redis_tls=True, redis_tls_cert_file="/c.crt")
    with pytest.raises(ValidationError, match="redis_tls_ca_file needs redis_tls=true"):
        WorkerSettings(engine=EngineKind.REDIS, redis_tls_ca_file="/ca.crt")
    # A rediss:// URL asks for TLS by itself.
    assert WorkerSettings(redis_url="rediss://r:6379/0", redis_tls_ca_file="/ca.crt").redis_tls_enabled
    with pytest.raises(ValueError, match="not a unix socket"):
        RedisConnector.from_settings(WorkerSettings(redis_url="unix:///tmp/r.sock", redis_tls=True))


async def test_sentinel_over_tls_fails_over_and_the_worker_counts_it(tmp_path: Path) -> None:
    """Three Redis nodes and three Sentinels speaking TLS alone (as the operator renders them): the engine
    finds the primary through the Sentinels over TLS, follows a SIGKILL failover, and counts it."""
    files = make_tls(tmp_path / "tls")
    deployment = SentinelRedis(tmp_path / "ha", password="ha-tls", tls=files)
    await asyncio.to_thread(deployment.start)
    connector = RedisConnector.from_settings(
        WorkerSettings(
            engine=EngineKind.REDIS,
            redis_mode=RedisMode.SENTINEL,
            redis_sentinels=[f"{host}:{port}" for host, port in deployment.sentinel_addresses],
            redis_sentinel_service=deployment.service,
            redis_url="redis://:ha-tls@sentinel-named-primary/0",
            redis_tls=True,
            redis_tls_ca_file=str(files.ca),
        )
    )
    engine = RedisEngine(connector, prefix="ha-tls")
    metrics = WorkerMetrics()
    metrics.watch_engine(engine)
    keep = HistoryOptions(10, 60)
    try:
        await engine.start()
        first = await engine.publish("room", b"before", history=keep)
        old = deployment.primary_address()
        assert await connector.primary() == old  # asked of the Sentinels, over TLS
        assert deployment.node_client(deployment.primary()).wait(2, 2000) == 2  # both replicas have it
        await asyncio.to_thread(deployment.kill_primary)
        new = await asyncio.to_thread(deployment.wait_for_failover, old)
        async with asyncio.timeout(30):
            while True:
                try:
                    second = await engine.publish("room", b"after", history=keep)
                    break
                except EngineError:  # refused while the old connections break: retried
                    await asyncio.sleep(0.2)
            while engine.failovers == 0:  # noqa: ASYNC110 - the pub/sub connection comes back on the new primary
                await asyncio.sleep(0.1)
        assert (second.position.epoch, second.position.offset) == (first.position.epoch, 2)
        assert engine.primary == new
        text = metrics.render().decode()
        assert 'resonance_redis_failovers_total{mode="sentinel"} 1.0' in text, text
        assert "resonance_redis_seconds_since_failover " in text
    finally:
        await engine.close()
        await connector.aclose()
        await asyncio.to_thread(deployment.stop)


async def test_a_tls_only_redis_cluster_serves_two_engines(tmp_path: Path) -> None:
    """Six Cluster nodes speaking TLS alone (clients and the cluster bus): two engines with the TLS
    settings find the slot map, and the sharded pub/sub connection to each primary is TLS too."""
    files = make_tls(tmp_path / "tls")
    cluster = await asyncio.to_thread(
        RedisClusterNodes(tmp_path / "cluster", password="c-tls", tls=files).start
    )
    settings = WorkerSettings(
        engine=EngineKind.REDIS,
        redis_mode=RedisMode.CLUSTER,
        redis_cluster_nodes=[f"{host}:{port}" for host, port in cluster.startup_nodes[:2]],
        redis_url="redis://:c-tls@seed-nodes-above/0",
        redis_tls=True,
        redis_tls_ca_file=str(files.ca),
        redis_prefix="c-tls",
    )
    nodes = [
        Node(RedisEngine(RedisConnector.from_settings(settings), prefix="c-tls"), Recorder())
        for _ in range(2)
    ]
    try:
        for node in nodes:
            await node.engine.start(node.events)
        a, b = nodes
        channels = [f"chat:{n}" for n in range(6)]  # spread over the three primaries
        for channel in channels:
            await b.engine.subscribe(channel)
        for channel in channels:
            await a.engine.publish(channel, channel.encode(), history=HistoryOptions(10, 60))
        await b.events.wait_for(lambda: len(b.events.of("publication")) == len(channels))
        kept, top = await b.engine.history("chat:5", limit=-1)
        assert [p.data for p in kept] == [b"chat:5"] and top.offset == 1
        owners = {cluster.primary_for(f"c-tls.stream.{{{channel}}}").port for channel in channels}
        assert len(owners) > 1
    finally:
        for node in nodes:
            await node.engine.close()
            await node.engine.connector.aclose()
        await asyncio.to_thread(cluster.stop)


async def test_a_client_certificate_when_redis_asks_for_one_and_verification_off(tmp_path: Path) -> None:
    """A Redis with ``tls-auth-clients yes`` (external Redis, ``clientSecretName``): refused without a
    client certificate, served with one. ``redis_tls_verify=false`` accepts a certificate no CA given
    vouches for (testing only)."""
    files = make_tls(tmp_path / "tls")
    server = RedisServer(tmp_path / "mtls", tls=files, extra_args=["--tls-auth-clients", "yes"]).start()
    url = f"redis://{server.host}:{server.port}/0"
    try:

        async def ping(**settings: object) -> bool:
            values: dict[str, object] = {"engine": EngineKind.REDIS, "redis_url": url, "redis_tls": True}
            connector = RedisConnector.from_settings(WorkerSettings(**(values | settings)))  # type: ignore[arg-type]
            client = connector.client(timeout=2.0, socket_timeout=2.0)
            try:
                return bool(await client.ping())
            finally:
                await client.aclose()

        with pytest.raises(RedisError):
            await ping(redis_tls_ca_file=str(files.ca))  # no client certificate
        assert await ping(
            redis_tls_ca_file=str(files.ca),
            redis_tls_cert_file=str(files.cert),
            redis_tls_key_file=str(files.key),
        )
        with pytest.raises(RedisError, match="certificate verify failed"):  # the system CAs do not know it
            await ping(redis_tls_cert_file=str(files.cert), redis_tls_key_file=str(files.key))
        assert await ping(
            redis_tls_verify=False, redis_tls_cert_file=str(files.cert), redis_tls_key_file=str(files.key)
        )
    finally:
        server.stop()
