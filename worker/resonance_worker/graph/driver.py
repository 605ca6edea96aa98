"""Opening the Neo4j driver for the worker (the transport may not import neo4j itself)."""

from __future__ import annotations

import asyncio

import neo4j
import neo4j.exceptions

from resonance_worker.graph.errors import GraphError
from resonance_worker.graph.schema import ensure_schema

CONNECT_TIMEOUT_S = 5.0
"""The driver's own limit on opening one connection (its default is 30 s); the callers' deadlines
(queries, projector transactions, schema) are the outer limits."""
ACQUIRE_TIMEOUT_S = 10.0
"""The driver's limit on getting a connection from its pool, opening included (default 60 s)."""
SCHEMA_DEADLINE_S = 90.0
"""Creating the schema waits up to 60 s for index population (``db.awaitIndexes``); past this,
Neo4j is hung, not busy."""


def open_driver(uri: str, user: str, password: str | None) -> neo4j.AsyncDriver:
    """An async driver; it connects lazily, so a down server is found by the first use."""
    auth = (user, password) if password is not None else None
    return neo4j.AsyncGraphDatabase.driver(
        uri,
        auth=auth,
        connection_timeout=CONNECT_TIMEOUT_S,
        connection_acquisition_timeout=ACQUIRE_TIMEOUT_S,
    )


async def prepare(
    driver: neo4j.AsyncDriver, *, database: str | None = None, deadline_s: float = SCHEMA_DEADLINE_S
) -> None:
    """Create the schema, as a :class:`GraphError` when Neo4j cannot be reached, refuses, or does
    not answer within ``deadline_s`` (a hung server must not hold the projector's start forever)."""
    try:
        async with asyncio.timeout(deadline_s):
            await ensure_schema(driver, database=database)
    except TimeoutError as exc:
        raise GraphError(f"neo4j schema timed out after {deadline_s:g} s") from exc
    except (neo4j.exceptions.Neo4jError, neo4j.exceptions.DriverError, OSError) as exc:
        raise GraphError(f"neo4j schema: {exc}") from exc
