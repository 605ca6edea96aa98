"""Session-wide fixtures for the real services. Each is started lazily, the
first time a test asks for it, and stopped at the end of the run."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.harness.redis import RedisServer
from tests.harness.rediscluster import RedisClusterNodes
from tests.harness.tls import make_tls


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Working directory for the services of this test run."""
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def redis_server(run_dir: Path) -> Iterator[RedisServer]:
    """A real redis-server, fresh for this test run."""
    server = RedisServer(run_dir / "redis").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster(run_dir: Path) -> Iterator[RedisClusterNodes]:
    """A real six-node Redis Cluster (three primaries, three replicas), shared by the run; tests keep
    apart by key prefix and never kill its nodes (a test that does starts its own)."""
    cluster = RedisClusterNodes(run_dir / "cluster").start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def redis_tls_server(run_dir: Path) -> Iterator[RedisServer]:
    """A real TLS-only redis-server with a password, its certificate signed by a throw-away CA
    (``server.tls.ca``), fresh for this test run; ``server.url`` is ``rediss://`` without the CA."""
    server = RedisServer(run_dir / "redis-tls", tls=make_tls(run_dir / "tls"), password="tls-secret").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A client on the run's Redis, flushed before each test."""
    client = aioredis.Redis.from_url(redis_server.url)
    await client.flushall()
    try:
        yield client
    finally:
        await client.aclose()


# --- Neo4j -----------------------------------------------------------------------------------------------
# (Imported here rather than at the top: this section is appended to a file another module owns.)
import asyncio  # noqa: E402

import neo4j  # noqa: E402

from tests.harness.neo4j import Neo4jServer  # noqa: E402


@pytest.fixture(scope="session")
def neo4j_server(run_dir: Path) -> Iterator[Neo4jServer]:
    """A real Neo4j 5.26 Community server (auth on, generated password), fresh for this test run.

    Tests may stop, kill or restart it; the next test gets it running again (see ``neo4j_driver``).
    """
    server = Neo4jServer(run_dir / "neo4j")
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
async def neo4j_driver(neo4j_server: Neo4jServer) -> AsyncIterator[neo4j.AsyncDriver]:
    """An async driver on the run's Neo4j, with the graph emptied before each test."""
    if not neo4j_server.running:  # an earlier test stopped or killed it
        await asyncio.to_thread(neo4j_server.start)
    driver = neo4j.AsyncGraphDatabase.driver(neo4j_server.uri, auth=neo4j_server.auth)
    try:
        await driver.verify_connectivity()
        await driver.execute_query("MATCH (n) DETACH DELETE n")
        yield driver
    finally:
        await driver.close()


# --- OpenTelemetry Collector (issue 17) ---------------------------------------------------------------
from tests.harness.otelcol import BIN as OTELCOL_BIN  # noqa: E402
from tests.harness.otelcol import Collector  # noqa: E402


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Collector]:
    """A real OpenTelemetry Collector (``make binaries`` builds it): OTLP in, spans to a file."""
    if not (OTELCOL_BIN / "otelcol").exists():
        pytest.fail("no otelcol: run `make binaries`")
    running = Collector(tmp_path / "otelcol").start()
    try:
        yield running
    finally:
        running.stop()
