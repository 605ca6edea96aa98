"""Opening the Neo4j driver for the worker (the transport may not import neo4j itself)."""

from __future__ import annotations

import neo4j
import neo4j.exceptions

from resonance_worker.graph.errors import GraphError
from resonance_worker.graph.schema import ensure_schema


def open_driver(uri: str, user: str, password: str | None) -> neo4j.AsyncDriver:
    """An async driver; it connects lazily, so a down server is found by the first use."""
    auth = (user, password) if password is not None else None
    return neo4j.AsyncGraphDatabase.driver(uri, auth=auth)


async def prepare(driver: neo4j.AsyncDriver, *, database: str | None = None) -> None:
    """Create the schema, as a :class:`GraphError` when Neo4j cannot be reached or refuses."""
    try:
        await ensure_schema(driver, database=database)
    except (neo4j.exceptions.Neo4jError, neo4j.exceptions.DriverError, OSError) as exc:
        raise GraphError(f"neo4j schema: {exc}") from exc
