"""No events lost during a Redis outage: a real SDK client keeps reporting its state through a 30 s
stop of the real Redis (AOF on, so what was stored before survives), the worker buffers the events
in order (``resonance_eventlog_buffered``) and flushes them when Redis is back; every event reaches
the event log and the real Neo4j graph, in the order it was reported."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import neo4j
import pytest
import redis.asyncio as aioredis

from tests.harness.neo4j import Neo4jServer
from tests.harness.redis import RedisServer
from tests.harness.worker import WorkerProcess
from tests.worker.transport.conftest import Clients

pytestmark = [pytest.mark.redis, pytest.mark.neo4j]

StartWorker = Callable[..., WorkerProcess]
OUTAGE_S = 30.0
USER = "olga"


def _buffered(worker: WorkerProcess) -> float:
    match = re.search(r"^resonance_eventlog_buffered ([0-9.e+]+)$", worker.metrics(), re.MULTILINE)
    assert match, "resonance_eventlog_buffered is not exported"
    return float(match.group(1))


async def test_a_30_s_redis_outage_loses_no_reported_state_and_keeps_the_order(
    tmp_path: Path,
    neo4j_server: Neo4jServer,
    neo4j_driver: neo4j.AsyncDriver,
    start_worker: StartWorker,
    clients: Clients,
) -> None:
    redis_server = await asyncio.to_thread(RedisServer(tmp_path / "redis", persistence=True).start)
    try:
        worker = start_worker(
            {
                "RESONANCE_ENGINE": "redis",
                "RESONANCE_REDIS_URL": redis_server.url,
                "RESONANCE_NEO4J__URI": neo4j_server.uri,
                "RESONANCE_NEO4J__USER": neo4j_server.user,
                "RESONANCE_NEO4J__PASSWORD": neo4j_server.password,
                "RESONANCE_DATA__CONSENT_REQUIRED": "true",
            }
        )
        client, _ = await clients.connected(worker.ws_url, worker.token(USER, consent=["emotions", "graph"]))
        labels: list[str] = []

        async def report(count: int, pause: float) -> None:
            for _ in range(count):
                label = f"r{len(labels):04d}"
                await client.rpc("state.report", {"valence": 0.1, "arousal": 0.5, "label": label})
                labels.append(label)
                await asyncio.sleep(pause)

        await report(10, 0.05)
        await asyncio.to_thread(redis_server.stop)
        down_at = time.monotonic()
        # A burst right after the stop, then a steady trickle for the rest of the outage.
        await report(100, 0.0)
        while time.monotonic() - down_at < OUTAGE_S - 1.0:
            await report(1, 0.25)
        assert await asyncio.to_thread(_buffered, worker) > 100
        await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
        await asyncio.to_thread(redis_server.start)
        await report(10, 0.05)

        for _ in range(150):  # the buffer drains within 30 s
            if await asyncio.to_thread(_buffered, worker) == 0:
                break
            await asyncio.sleep(0.2)
        else:
            pytest.fail("the journal still buffers events 30 s after Redis came back")

        # The event log, in stream order.
        direct = aioredis.Redis.from_url(redis_server.url)
        try:
            entries = await direct.xrange("resonance.events")
        finally:
            await direct.aclose()
        logged = []
        for _, fields in entries:
            event = json.loads(fields[b"e"])
            if event["type"] == "state_changed" and event["subject"] == USER:
                logged.append(event["payload"]["state"]["label"])
        assert list(dict.fromkeys(logged)) == labels  # every one, in order (a retried batch may repeat)

        # The graph, in time order.
        async def projected() -> list[str]:
            while True:
                records, _, _ = await neo4j_driver.execute_query(
                    "MATCH (s:State {user_id: $user}) RETURN s.label AS label ORDER BY s.at, s.id", user=USER
                )
                found = [r["label"] for r in records]
                if len(found) >= len(labels):
                    return found
                await asyncio.sleep(0.5)

        assert await asyncio.wait_for(projected(), 60) == labels
        assert "event dropped" not in worker.log()
    finally:
        await asyncio.to_thread(redis_server.stop)
