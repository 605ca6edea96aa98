"""Constraints and indexes the projector and the queries rely on; created at start, idempotently."""

from __future__ import annotations

import neo4j

SCHEMA: tuple[str, ...] = (
    # The idempotency key of the projection: one node per applied event.
    "CREATE CONSTRAINT resonance_event_id IF NOT EXISTS FOR (n:Event) REQUIRE n.id IS UNIQUE",
    "CREATE CONSTRAINT resonance_user_id IF NOT EXISTS FOR (n:User) REQUIRE n.id IS UNIQUE",
    "CREATE CONSTRAINT resonance_room_id IF NOT EXISTS FOR (n:Room) REQUIRE n.id IS UNIQUE",
    "CREATE CONSTRAINT resonance_session_id IF NOT EXISTS FOR (n:Session) REQUIRE n.id IS UNIQUE",
    "CREATE CONSTRAINT resonance_worker_id IF NOT EXISTS FOR (n:Worker) REQUIRE n.id IS UNIQUE",
    "CREATE CONSTRAINT resonance_state_id IF NOT EXISTS FOR (n:State) REQUIRE n.id IS UNIQUE",
    # Timelines, as-of lookups and the chain insertion seek states of one person by time.
    "CREATE INDEX resonance_state_user_at IF NOT EXISTS FOR (n:State) ON (n.user_id, n.at)",
    "CREATE INDEX resonance_resonance_room_at IF NOT EXISTS FOR (n:Resonance) ON (n.room_id, n.at)",
)


async def ensure_schema(driver: neo4j.AsyncDriver, *, database: str | None = None, wait_s: int = 60) -> None:
    """Create every constraint and index if missing, then wait until they are online.

    Auto-commit statements, without the driver's own retries: the caller (the projector) has its
    own back-off, and a dead server should fail fast."""
    async with driver.session(database=database) as session:
        for statement in (*SCHEMA, f"CALL db.awaitIndexes({int(wait_s)})"):
            result = await session.run(statement)
            await result.consume()
