"""The worker's handle on Neo4j: one driver, the schema, a projector and the named queries.

It implements :class:`resonance_worker.storage.GraphStore`, so the living core uses the graph
without importing neo4j; :func:`resonance_worker.storage.build_storage` builds it when
``RESONANCE_NEO4J__URI`` is set. To offer a new query over RPC (``graph.<name>``) and the server
API (``POST /api/graph.<name>``): write it in ``graph.queries`` and add a line to ``_QUERIES``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import neo4j

from resonance_worker.eventlog.base import EventLog
from resonance_worker.graph import queries, rights
from resonance_worker.graph.driver import open_driver, prepare
from resonance_worker.graph.projector import Projector, ProjectorConfig
from resonance_worker.living_settings import Neo4jSettings

Query = Callable[[neo4j.AsyncDriver, str, Mapping[str, Any], str | None], Awaitable[Any]]
"""(driver, user, arguments, database) → a JSON-ready result. The queries validate their arguments."""


async def _timeline(
    driver: neo4j.AsyncDriver, user: str, args: Mapping[str, Any], database: str | None
) -> Any:
    records = await queries.timeline(
        driver, user, args.get("since"), args.get("until"), limit=args.get("limit", 1000), database=database
    )
    return {"states": [r.to_dict() for r in records]}


async def _as_of(driver: neo4j.AsyncDriver, user: str, args: Mapping[str, Any], database: str | None) -> Any:
    at: Any = args.get("at")  # the query validates it
    record = await queries.state_as_of(driver, user, at, database=database)
    return {"state": None if record is None else record.to_dict()}


async def _transitions(
    driver: neo4j.AsyncDriver, user: str, args: Mapping[str, Any], database: str | None
) -> Any:
    matrix = await queries.transition_matrix(
        driver, user, args.get("since"), args.get("until"), database=database
    )
    return matrix.to_dict()


async def _time_of_day(
    driver: neo4j.AsyncDriver, user: str, args: Mapping[str, Any], database: str | None
) -> Any:
    buckets = await queries.time_of_day(
        driver,
        user,
        args.get("since"),
        args.get("until"),
        utc_offset_minutes=args.get("utc_offset_minutes", 0),
        database=database,
    )
    return buckets.to_dict()


async def _partners(
    driver: neo4j.AsyncDriver, user: str, args: Mapping[str, Any], database: str | None
) -> Any:
    partners = await queries.resonance_partners(
        driver, user, args.get("since"), args.get("until"), database=database
    )
    return {"partners": [p.to_dict() for p in partners]}


_QUERIES: Mapping[str, Query] = {
    "timeline": _timeline,
    "as_of": _as_of,
    "transitions": _transitions,
    "time_of_day": _time_of_day,
    "partners": _partners,
}


class Neo4jGraphStore:
    """The graph of one worker (the driver connects lazily: a down server is found by the first use)."""

    queries = frozenset(_QUERIES)

    def __init__(self, settings: Neo4jSettings) -> None:
        if settings.uri is None:
            raise ValueError("Neo4jGraphStore needs settings.uri")
        password = settings.password.get_secret_value() if settings.password is not None else None
        self.driver = open_driver(settings.uri, settings.user, password)
        self.database = settings.database

    async def prepare(self) -> None:
        await prepare(self.driver, database=self.database)

    def projector(self, log: EventLog, consumer: str) -> Projector:
        return Projector(log, self.driver, consumer=consumer, config=ProjectorConfig(database=self.database))

    async def query(self, name: str, user: str, args: Mapping[str, Any]) -> Any:
        """Query ``name`` for ``user``: ``KeyError`` for a name not in :attr:`queries`."""
        return await _QUERIES[name](self.driver, user, args, self.database)

    async def export_user(self, user: str) -> dict[str, Any]:
        return await rights.export_user(self.driver, user, database=self.database)

    async def erase_user(self, user: str) -> dict[str, int]:
        return await rights.erase_user(self.driver, user, database=self.database)

    async def expire(self, *, emotions_before: float | None, graph_before: float | None) -> int:
        return await rights.expire(
            self.driver, emotions_before=emotions_before, graph_before=graph_before, database=self.database
        )

    async def close(self) -> None:
        await self.driver.close()
