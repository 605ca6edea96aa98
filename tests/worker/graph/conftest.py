"""Graph fixtures and helpers: projectors on the run's real Neo4j, graph snapshots, the NEXT chain."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import neo4j
from resonance_worker.domain import events
from resonance_worker.domain.events import Event
from resonance_worker.eventlog import MemoryEventLog
from resonance_worker.eventlog.base import EventLog
from resonance_worker.graph import Projector, ProjectorConfig

_consumers = itertools.count()

FAST = ProjectorConfig(
    batch_size=50,
    block_ms=20,
    claim_idle_ms=60_000,
    claim_interval_s=0.05,
    transaction_timeout_s=30.0,  # the first statements compile slowly on a cold, C1-only JVM
    backoff_base_s=0.05,
    backoff_max_s=0.5,
    breaker_failures=2,
    breaker_reset_s=0.3,
)


async def until(check: Callable[[], bool], *, within_s: float = 60.0, what: str = "condition") -> None:
    """Poll ``check`` (a projector's counters move in its own task) until it holds."""
    for _ in range(int(within_s / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{what} did not hold within {within_s:g} s")


def projector(log: EventLog, driver: neo4j.AsyncDriver, config: ProjectorConfig = FAST) -> Projector:
    return Projector(log, driver, consumer=f"projector-{next(_consumers)}", config=config)


async def project(driver: neo4j.AsyncDriver, items: list[Event], log: EventLog | None = None) -> Projector:
    """Append ``items`` to a (memory) log and drain one projector over it."""
    log = log or MemoryEventLog()
    await log.append_many(items)
    worker = projector(log, driver)
    await worker.drain()
    return worker


def state(
    person: str,
    at: float,
    valence: float,
    arousal: float,
    *,
    label: str | None = None,
    session: str | None = None,
) -> Event:
    return events.state_changed(
        person,
        at,
        {"valence": valence, "arousal": arousal, "source": "self_report", "at": at, "label": label},
        session_id=session,
    )


async def rows(driver: neo4j.AsyncDriver, query: str, **parameters: Any) -> list[dict[str, Any]]:
    records, _, _ = await driver.execute_query(query, parameters)
    return [record.data() for record in records]


async def snapshot(driver: neo4j.AsyncDriver) -> tuple[list[Any], list[Any]]:
    """Every node (labels, properties) and relationship (ends, type, properties), sorted: equal
    snapshots mean equal graphs (up to internal ids)."""
    nodes = await rows(driver, "MATCH (n) RETURN labels(n) AS labels, properties(n) AS props")
    rels = await rows(
        driver,
        "MATCH (a)-[r]->(b) RETURN labels(a) AS a, coalesce(a.id, '') AS a_id, type(r) AS type, "
        "properties(r) AS props, labels(b) AS b, coalesce(b.id, '') AS b_id",
    )
    return sorted(map(repr, nodes)), sorted(map(repr, rels))


async def chain(driver: neo4j.AsyncDriver, person: str) -> list[float]:
    """The person's states from the first (no incoming NEXT) along NEXT; asserts it is one simple path
    covering every state, ending at LATEST."""
    states = await rows(driver, "MATCH (s:State {user_id: $p}) RETURN count(s) AS n", p=person)
    heads = await rows(
        driver, "MATCH (s:State {user_id: $p}) WHERE NOT ()-[:NEXT]->(s) RETURN s.id AS id", p=person
    )
    if states[0]["n"] == 0:
        return []
    assert len(heads) == 1, f"the chain has {len(heads)} heads"
    times = []
    current = heads[0]["id"]
    while current is not None:
        found = await rows(
            driver,
            "MATCH (s:State {id: $id}) OPTIONAL MATCH (s)-[:NEXT]->(n) "
            "RETURN s.at AS at, collect(n.id) AS next",
            id=current,
        )
        times.append(found[0]["at"])
        assert len(found[0]["next"]) <= 1, "a state with two successors"
        current = found[0]["next"][0] if found[0]["next"] else None
        assert len(times) <= states[0]["n"], "a cycle in the chain"
    assert len(times) == states[0]["n"], "states off the chain"
    latest = await rows(driver, "MATCH (:User {id: $p})-[:LATEST]->(s) RETURN s.at AS at", p=person)
    assert [row["at"] for row in latest] == [times[-1]]
    return times
