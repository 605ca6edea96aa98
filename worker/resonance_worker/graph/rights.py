"""A person's part of the graph: export it, erase it, and drop what is past its retention.

A person is their ``(:User {id})`` node with its relations (sessions, room presence, resonance
with others), their ``State`` chain and ``Question`` nodes (``user_id``), the ``Resonance`` results
they took part in (computed from their states and heart rates) and the idempotency guards
``(:Event {subject: <user>})`` of their events. Erasing deletes all of it; another member's own
states and questions stay, their relation to the erased person goes.
"""

from __future__ import annotations

from typing import Any

import neo4j

_EXPORT = {
    "states": "MATCH (s:State {user_id: $user}) RETURN properties(s) AS item ORDER BY s.at, s.id",
    "questions": "MATCH (q:Question {user_id: $user}) RETURN properties(q) AS item ORDER BY q.at, q.id",
    "relations": """
MATCH (:User {id: $user})-[r]-(other)
RETURN {type: type(r), labels: labels(other), other: other.id, properties: properties(r)} AS item
""",
}

_ERASE = {
    "resonances": (
        "MATCH (:User {id: $user})-[:PARTICIPATED_IN]->(x:Resonance) DETACH DELETE x RETURN count(*) AS n"
    ),
    "states": "MATCH (s:State {user_id: $user}) DETACH DELETE s RETURN count(*) AS n",
    "questions": "MATCH (q:Question {user_id: $user}) DETACH DELETE q RETURN count(*) AS n",
    "sessions": "MATCH (:User {id: $user})-[:HAD_SESSION]->(s:Session) DETACH DELETE s RETURN count(*) AS n",
    "events": "MATCH (e:Event {subject: $user}) DELETE e RETURN count(*) AS n",
    "users": "MATCH (u:User {id: $user}) DETACH DELETE u RETURN count(*) AS n",
}

_EXPIRE_EMOTIONS = """
MATCH (n) WHERE (n:State OR n:Question OR n:Resonance OR n:Pattern) AND n.at < $before
DETACH DELETE n RETURN count(*) AS n
"""
_EXPIRE_GRAPH = """
MATCH ()-[r]->() WHERE r.at < $before DELETE r RETURN count(*) AS n
"""


async def export_user(driver: neo4j.AsyncDriver, user: str, *, database: str | None) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, query in _EXPORT.items():
        records, _, _ = await driver.execute_query(
            query, user=user, database_=database, routing_=neo4j.RoutingControl.READ
        )
        result[name] = [dict(record["item"]) for record in records]
    return result


async def erase_user(driver: neo4j.AsyncDriver, user: str, *, database: str | None) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name, query in _ERASE.items():
        records, _, _ = await driver.execute_query(query, user=user, database_=database)
        counts[name] = int(records[0]["n"])
    return counts


async def expire(
    driver: neo4j.AsyncDriver,
    *,
    emotions_before: float | None,
    graph_before: float | None,
    database: str | None,
) -> int:
    """Delete emotional nodes (states, questions, resonance results, patterns) older than
    ``emotions_before`` and every relation older than ``graph_before`` (both epoch seconds; None: keep),
    and emotional nodes older than ``graph_before`` too (they are graph data as well). How many went."""
    removed = 0
    for query, before in (
        (_EXPIRE_EMOTIONS, _stricter(emotions_before, graph_before)),
        (_EXPIRE_GRAPH, graph_before),
    ):
        if before is not None:
            records, _, _ = await driver.execute_query(query, before=before, database_=database)
            removed += int(records[0]["n"])
    return removed


def _stricter(*cutoffs: float | None) -> float | None:
    """The later cutoff removes more: states are both emotional and graph data."""
    given = [c for c in cutoffs if c is not None]
    return max(given) if given else None
