"""Faults on real servers: Neo4j stopped mid-burst, a projector crash, a lost acknowledgement, a stall.

These tests stop and start a Neo4j of their own (same port, data and password across restarts), never the
run's shared one.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import neo4j
import pytest
import redis.asyncio as aioredis
from resonance_worker.domain import events
from resonance_worker.domain.events import Event
from resonance_worker.eventlog import EventLogError, MemoryEventLog
from resonance_worker.eventlog.redis import RedisEventLog
from resonance_worker.graph import GraphError, ProjectorConfig, timeline
from resonance_worker.graph.driver import open_driver, prepare

from tests.harness.faults import FaultProxy
from tests.harness.neo4j import Neo4jServer
from tests.harness.processes import free_port
from tests.harness.redis import RedisServer
from tests.worker.graph.conftest import FAST, chain, project, projector, rows, state, until

pytestmark = [pytest.mark.neo4j, pytest.mark.redis]


@pytest.fixture(scope="module")
def own_neo4j(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Neo4jServer]:
    server = Neo4jServer(tmp_path_factory.mktemp("own-neo4j"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def own_driver(own_neo4j: Neo4jServer) -> AsyncIterator[neo4j.AsyncDriver]:
    if not own_neo4j.running:
        await asyncio.to_thread(own_neo4j.start)
    driver = neo4j.AsyncGraphDatabase.driver(own_neo4j.uri, auth=own_neo4j.auth, connection_timeout=2.0)
    await driver.execute_query("MATCH (n) DETACH DELETE n")
    try:
        yield driver
    finally:
        await driver.close()


def mixed_burst(count: int) -> list[Event]:
    """States of three people (out of time order), presence and resonance in two rooms."""
    items: list[Event] = []
    for i in range(count):
        person = ("ann", "bob", "cy")[i % 3]
        room = ("r1", "r2")[i % 2]
        match i % 5:
            case 0 | 1 | 2:
                # Times run backwards within each block of 30: arrival order ≠ time order.
                items.append(state(person, 1_000.0 + (i // 30) * 30 + (29 - i % 30), (i % 11 - 5) / 5, 0.5))
            case 3:
                items.append(events.presence_changed(room, float(i), person, joined=i % 2 == 0))
            case _:
                items.append(
                    events.resonance_computed(room, float(i), {"score": 0.5, "member_ids": [person, "dee"]})
                )
    return items


async def graph_matches(driver: neo4j.AsyncDriver, items: list[Event]) -> None:
    """The graph holds every event exactly once: event nodes, states, chains, presence, resonance."""
    counts = await rows(
        driver,
        "CALL { MATCH (e:Event) RETURN count(e) AS events } "
        "CALL { MATCH (s:State) RETURN count(s) AS states } "
        "CALL { MATCH ()-[p:JOINED|LEFT]->() RETURN count(p) AS presence } "
        "CALL { MATCH (x:Resonance) RETURN count(x) AS resonance } "
        "CALL { MATCH ()-[r:RESONATED_WITH]->() RETURN count(r) AS pairs } "
        "RETURN events, states, presence, resonance, pairs",
    )
    kinds = [e.type.value for e in items]
    assert counts == [
        {
            "events": len({e.id for e in items}),
            "states": kinds.count("state_changed"),
            "presence": kinds.count("presence_changed"),
            "resonance": kinds.count("resonance_computed"),
            "pairs": kinds.count("resonance_computed"),
        }
    ]
    for person in ("ann", "bob", "cy"):
        expected = sorted(e.at for e in items if e.type.value == "state_changed" and e.subject == person)
        assert await chain(driver, person) == expected


async def test_neo4j_stopped_mid_burst_ends_with_a_complete_graph(
    own_neo4j: Neo4jServer, own_driver: neo4j.AsyncDriver, redis_client: aioredis.Redis
) -> None:
    log = RedisEventLog(redis_client, prefix="burst")
    await log.setup()
    worker = projector(log, own_driver, FAST)
    task = asyncio.create_task(worker.run())
    items = mixed_burst(300)
    try:
        for chunk in range(0, 100, 20):
            await log.append_many(items[chunk : chunk + 20])
            await asyncio.sleep(0.05)
        await until(lambda: worker.stats.projected >= 20, what="the first events projected")
        stopping = asyncio.create_task(asyncio.to_thread(own_neo4j.stop))
        for chunk in range(100, 300, 20):  # the burst goes on while Neo4j goes down
            await log.append_many(items[chunk : chunk + 20])
            await asyncio.sleep(0.05)
        await stopping

        await until(lambda: worker.stats.failures >= 3, what="the projector noticing Neo4j is down")
        lag = await worker.lag()
        assert lag.pending + (lag.undelivered or 0) > 0  # behind, and nothing acknowledged it could not write
        assert worker.stats.projected < 300
        assert worker.stats.last_error is not None

        await asyncio.to_thread(own_neo4j.start)
        await until(
            lambda: worker.stats.projected + worker.stats.duplicates >= 300, within_s=120, what="catch-up"
        )
        worker.stop()
        await asyncio.wait_for(task, 30)
    finally:
        task.cancel()
    assert (await worker.lag()).to_dict() == {"pending": 0, "undelivered": 0}
    assert worker.stats.poison == 0 and worker.stats.consecutive_failures == 0
    await graph_matches(own_driver, items)


async def test_a_crashed_projectors_batch_is_claimed_by_a_new_one(
    neo4j_driver: neo4j.AsyncDriver, redis_client: aioredis.Redis
) -> None:
    log = RedisEventLog(redis_client, prefix="crash")
    items = mixed_burst(60)
    await log.append_many(items)
    # The doomed projector's Neo4j is a port nobody listens on: it reads a batch and cannot write it.
    nowhere = neo4j.AsyncGraphDatabase.driver(f"bolt://127.0.0.1:{free_port()}", auth=("neo4j", "x"))
    doomed = projector(log, nowhere, FAST)
    doomed_task = asyncio.create_task(doomed.run())
    await until(lambda: doomed.in_hand > 0 and doomed.stats.failures >= 1, what="a batch in hand")
    doomed_task.cancel()  # a crash: the batch is never acknowledged
    with pytest.raises(asyncio.CancelledError):
        await doomed_task
    await nowhere.close()
    assert (await log.lag()).pending == FAST.batch_size

    await asyncio.sleep(0.1)
    rescuer = projector(log, neo4j_driver, ProjectorConfig(batch_size=50, block_ms=0, claim_idle_ms=50))
    settled = await rescuer.drain()

    assert settled == 60
    assert rescuer.stats.claimed == FAST.batch_size and rescuer.stats.projected == 60
    assert (await log.lag()).to_dict() == {"pending": 0, "undelivered": 0}
    await graph_matches(neo4j_driver, items)


async def test_a_lost_acknowledgement_writes_nothing_twice(
    own_neo4j: Neo4jServer, own_driver: neo4j.AsyncDriver, tmp_path: Path
) -> None:
    redis_server = RedisServer(tmp_path / "redis", persistence=True).start()
    log = RedisEventLog.from_url(redis_server.url, prefix="ack", timeout=1.0)
    try:
        items = mixed_burst(20)
        await log.append_many(items)
        # The first write after Neo4j's restart runs on a cold server: on loaded shared cores it outlasted the
        # default 15 s transaction timeout. What is tested is the acknowledgement, not a deadline.
        config = ProjectorConfig(batch_size=50, block_ms=0, transaction_timeout_s=120.0)
        worker = projector(log, own_driver, config)
        await asyncio.to_thread(own_neo4j.stop)
        with pytest.raises(GraphError):
            await worker.step()  # read the batch; Neo4j is down
        assert worker.in_hand == 20
        await asyncio.to_thread(own_neo4j.start)
        redis_server.stop()
        with pytest.raises(EventLogError):
            await worker.step()  # written and committed; the ack cannot reach Redis
        assert worker.stats.projected == 20
        redis_server.start()  # AOF: the stream, the group and its pending entries are back

        assert await worker.step() == 20  # only the acknowledgement is retried
        assert worker.stats.projected == 20 and worker.stats.duplicates == 0
        assert (await log.lag()).to_dict() == {"pending": 0, "undelivered": 0}
        await graph_matches(own_driver, items)
    finally:
        await log.close()
        redis_server.stop()


async def test_a_stalled_neo4j_gives_timeouts(own_neo4j: Neo4jServer, own_driver: neo4j.AsyncDriver) -> None:
    await own_driver.execute_query("RETURN 1")  # a pooled connection, so the stall hits a live socket
    assert own_neo4j.process is not None
    own_neo4j.process.signal(signal.SIGSTOP)
    try:
        with pytest.raises(GraphError, match=r"timed out after 0\.5 s"):
            await timeline(own_driver, "ann", deadline_s=0.5)
    finally:
        own_neo4j.process.signal(signal.SIGCONT)
    assert await timeline(own_driver, "ann") == []


async def test_a_projector_facing_a_stalled_neo4j_times_out_and_keeps_its_batch(
    own_neo4j: Neo4jServer, own_driver: neo4j.AsyncDriver
) -> None:
    # Warm up (schema, compiled statements), so that 0.5 s is plenty once the server runs again.
    await projector(MemoryEventLog(), own_driver, FAST).drain()
    await project(own_driver, [state("warm-up", 0.0, 0.0, 0.5)])
    log = MemoryEventLog()
    await log.append_many([state("ann", float(t), 0.0, 0.5) for t in range(3)])
    worker = projector(log, own_driver, ProjectorConfig(block_ms=0, transaction_timeout_s=0.5))
    assert own_neo4j.process is not None
    own_neo4j.process.signal(signal.SIGSTOP)
    try:
        with pytest.raises(GraphError, match=r"timed out after 5\.5 s"):
            await worker.step()
    finally:
        own_neo4j.process.signal(signal.SIGCONT)
    assert worker.in_hand == 3 and (await log.lag()).pending == 3
    # The resumed server may be slow for a moment: the run loop retries, as in production.
    task = asyncio.create_task(worker.run())
    await until(lambda: worker.stats.projected == 3, within_s=120, what="the kept batch projected")
    worker.stop()
    await asyncio.wait_for(task, 30)
    assert (await log.lag()).to_dict() == {"pending": 0, "undelivered": 0}
    assert await chain(own_driver, "ann") == [0.0, 1.0, 2.0]


async def test_an_unreachable_neo4j_is_a_graph_error() -> None:
    nowhere = neo4j.AsyncGraphDatabase.driver(f"bolt://127.0.0.1:{free_port()}", auth=("neo4j", "x"))
    try:
        with pytest.raises(GraphError, match="graph query failed: ServiceUnavailable"):
            await timeline(nowhere, "ann")
    finally:
        await nowhere.close()


async def test_the_worker_driver_prepares_the_schema_or_says_why(neo4j_server: Neo4jServer) -> None:
    """``open_driver`` + ``prepare`` as the worker runs them: the schema on a live server; a hung
    one (every byte held by a proxy) is a GraphError at the deadline; no server, at once."""
    proxy = await FaultProxy(neo4j_server.port).start()
    driver = open_driver(f"bolt://127.0.0.1:{proxy.port}", neo4j_server.user, neo4j_server.password)
    try:
        await prepare(driver)
        proxy.stall()
        fresh = open_driver(f"bolt://127.0.0.1:{proxy.port}", neo4j_server.user, neo4j_server.password)
        try:
            with pytest.raises(GraphError, match=r"neo4j schema timed out after 0\.5 s"):
                await prepare(fresh, deadline_s=0.5)
        finally:
            proxy.resume()
            await fresh.close()
        assert proxy.held_bytes > 0
        await prepare(driver)  # the same driver carries on once the server answers again
    finally:
        await driver.close()
        await proxy.close()
    nowhere = open_driver(f"bolt://127.0.0.1:{free_port()}", "neo4j", None)
    try:
        with pytest.raises(GraphError, match="neo4j schema: "):
            await prepare(nowhere)
    finally:
        await nowhere.close()
