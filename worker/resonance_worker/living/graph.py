"""The temporal graph in the living core: the projector's run and the graph queries (``graph.*``).

Present only when ``storage.graph`` is (``RESONANCE_NEO4J__URI`` set). The queries go through the
thyroid's ``neo4j`` circuit: while it is open they fail fast with error 108 (not available) instead
of piling onto a failing database; a failed query or projector attempt is ``neo4j_failure`` pain.
The graph itself is reached through :class:`~resonance_worker.storage.GraphStore`, so nothing here
loads neo4j. The server API's route for the same queries is the transport's (``transport.living``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from resonance_worker.domain.backoff import Backoff, Uniform
from resonance_worker.domain.circuit import CircuitBreaker
from resonance_worker.domain.codes import ErrorCode
from resonance_worker.domain.thyroid import PainSource
from resonance_worker.errors import GraphError, GraphQueryInputError
from resonance_worker.eventlog import EventLog
from resonance_worker.rpc import RpcCall, RpcError, RpcHandler
from resonance_worker.storage import GraphStore, Projection

log = logging.getLogger("resonance.worker.graph")

SCHEMA_RETRY = Backoff(first_s=1.0, cap_s=30.0)
"""Creating the schema while Neo4j is away: from 1 s, doubling, up to 30 s."""
MAX_PAIN_PER_LOOK = 10
"""At most this many projector failures are felt per thyroid evaluation (a burst is one outage)."""


class LivingGraph:
    """The projector task and the queries of one worker."""

    def __init__(
        self,
        store: GraphStore,
        *,
        event_log: EventLog,
        consumer: str,
        breaker: CircuitBreaker,
        feel: Callable[[PainSource], None],
        clock: Callable[[], float] = time.time,
        uniform: Uniform = random.uniform,
    ) -> None:
        self.store = store
        self.event_log = event_log
        self.consumer = consumer
        self.breaker = breaker
        self.feel = feel
        self.clock = clock
        self.uniform = uniform
        self.projector: Projection | None = None
        self._failures_seen = 0

    @property
    def queries(self) -> frozenset[str]:
        return self.store.queries

    async def run(self) -> None:
        """Create the schema (retrying while Neo4j is away), then project forever."""
        attempt = 0
        while True:
            try:
                await self.store.prepare()
                break
            except GraphError as exc:
                delay = SCHEMA_RETRY.delay(attempt, self.uniform)
                log.warning("neo4j not ready", extra={"error": str(exc), "retry_in_s": round(delay, 1)})
                self.feel(PainSource.NEO4J_FAILURE)
                await asyncio.sleep(delay)
                attempt += 1
        self.projector = self.store.projector(self.event_log, self.consumer)
        await self.projector.run()

    def feel_failures(self) -> None:
        """Every failed projector attempt since the last look is neo4j pain."""
        if self.projector is None:
            return
        failures = self.projector.failures
        for _ in range(min(MAX_PAIN_PER_LOOK, failures - self._failures_seen)):
            self.feel(PainSource.NEO4J_FAILURE)
        self._failures_seen = failures

    async def query(self, name: str, user: object, args: Mapping[str, Any]) -> Any:
        """One graph query for ``user``: bad arguments → 107, Neo4j down or circuit open → 108."""
        if not self.breaker.allow(self.clock()):
            raise RpcError(ErrorCode.NOT_AVAILABLE, "the graph is resting (circuit open); retry later")
        if not isinstance(user, str) or not user:
            raise RpcError(ErrorCode.BAD_REQUEST, "user must be a non-empty string")
        try:
            result = await self.store.query(name, user, args)
        except GraphQueryInputError as exc:
            raise RpcError(ErrorCode.BAD_REQUEST, str(exc)) from None
        except GraphError as exc:
            self.breaker.record_failure(self.clock())
            self.feel(PainSource.NEO4J_FAILURE)
            raise RpcError(ErrorCode.NOT_AVAILABLE, f"the graph is unavailable: {exc}") from None
        self.breaker.record_success(self.clock())
        return result

    def rpc_methods(self) -> dict[str, RpcHandler]:
        """``graph.<query>`` for each query: a person reads their own graph."""

        def method(name: str) -> RpcHandler:
            async def handle(call: RpcCall) -> Any:
                args = call.data if call.data is not None else {}
                if not isinstance(args, dict):
                    raise RpcError(ErrorCode.BAD_REQUEST, f"graph.{name} takes a JSON object")
                return await self.query(name, call.user, args)

            return handle

        return {f"graph.{name}": method(name) for name in sorted(self.queries)}
