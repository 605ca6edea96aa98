"""The harness's real Neo4j: Bolt with auth, a refused wrong password, data that outlives a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

import neo4j
import pytest
from neo4j.exceptions import AuthError

from tests.harness.neo4j import Neo4jServer

pytestmark = pytest.mark.neo4j


async def test_written_graph_reads_back_over_bolt(neo4j_driver: neo4j.AsyncDriver) -> None:
    await neo4j_driver.execute_query(
        "CREATE (:Member {id: $a})-[:RESONATES_WITH {score: 0.75}]->(:Member {id: $b})",
        a="alice",
        b="bob",
    )

    records, _, _ = await neo4j_driver.execute_query(
        "MATCH (a:Member)-[r:RESONATES_WITH]->(b:Member) RETURN a.id AS a, r.score AS score, b.id AS b"
    )

    assert [record.data() for record in records] == [{"a": "alice", "score": 0.75, "b": "bob"}]


async def test_graph_is_empty_at_the_start_of_each_test(neo4j_driver: neo4j.AsyncDriver) -> None:
    records, _, _ = await neo4j_driver.execute_query("MATCH (n) RETURN count(n) AS nodes")

    assert records[0]["nodes"] == 0


async def test_wrong_password_is_refused(neo4j_server: Neo4jServer) -> None:
    async with neo4j.AsyncGraphDatabase.driver(
        neo4j_server.uri, auth=(neo4j_server.user, neo4j_server.password + "-wrong")
    ) as driver:
        with pytest.raises(AuthError):
            await driver.verify_connectivity()


async def test_data_survives_a_clean_restart(
    neo4j_server: Neo4jServer, neo4j_driver: neo4j.AsyncDriver
) -> None:
    uri_before = neo4j_server.uri
    await neo4j_driver.execute_query("CREATE (:Insight {text: $text})", text="kept across restarts")

    await asyncio.to_thread(neo4j_server.restart)

    assert neo4j_server.uri == uri_before
    # The same driver (same URI and password) reconnects to the restarted server.
    records, _, _ = await neo4j_driver.execute_query("MATCH (i:Insight) RETURN i.text AS text")
    assert [record["text"] for record in records] == ["kept across restarts"]


async def test_committed_data_survives_a_crash(
    neo4j_server: Neo4jServer, neo4j_driver: neo4j.AsyncDriver
) -> None:
    await neo4j_driver.execute_query("UNWIND range(1, 100) AS i CREATE (:Beat {seq: i})")

    await asyncio.to_thread(neo4j_server.kill)
    assert not neo4j_server.running
    await asyncio.to_thread(neo4j_server.start)

    records, _, _ = await neo4j_driver.execute_query(
        "MATCH (b:Beat) RETURN count(b) AS beats, sum(b.seq) AS total"
    )
    assert (records[0]["beats"], records[0]["total"]) == (100, 5050)


async def test_a_password_that_starts_with_a_dash_is_a_password(tmp_path: Path) -> None:
    """Generated passwords (token_urlsafe) can start with '-': neo4j-admin must not read one as an option
    (it once failed a clean-clone run with "Missing required parameter: '<password>'")."""
    server = await asyncio.to_thread(Neo4jServer(tmp_path, password="-dash-first-" + "p" * 12).start)
    try:
        async with neo4j.AsyncGraphDatabase.driver(server.uri, auth=server.auth) as driver:
            records, _, _ = await driver.execute_query("RETURN 1 AS one")
        assert records[0]["one"] == 1
    finally:
        await asyncio.to_thread(server.stop)
