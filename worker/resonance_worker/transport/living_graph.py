"""The temporal graph in the worker: the projector (event log → Neo4j) and the graph queries
over RPC (``graph.*``) and the server API (``POST /api/graph.<query>``).

Off unless ``RESONANCE_NEO4J__URI`` is set; the neo4j package is imported only then. The
queries run through the thyroid's ``neo4j`` circuit: while it is open they fail fast with
error 108 (not available) instead of piling onto a failing database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from resonance_worker.domain.codes import ErrorCode
from resonance_worker.domain.thyroid import PainSource
from resonance_worker.living_settings import Neo4jSettings
from resonance_worker.rpc import RpcCall, RpcError, RpcHandler

if TYPE_CHECKING:
    from resonance_worker.transport.living import Living

log = logging.getLogger("resonance.worker.graph")

SCHEMA_RETRY_FIRST_S = 1.0
SCHEMA_RETRY_MAX_S = 30.0

QUERIES = ("timeline", "as_of", "transitions", "time_of_day", "partners")

Query = Callable[[Any, str, Mapping[str, Any]], Awaitable[Any]]


class LivingGraph:
    """The projector task and the queries of one worker."""

    def __init__(self, living: Living, settings: Neo4jSettings) -> None:
        from resonance_worker.graph.driver import open_driver

        assert settings.uri is not None
        self.living = living
        self.settings = settings
        password = settings.password.get_secret_value() if settings.password is not None else None
        self.driver = open_driver(settings.uri, settings.user, password)
        self.projector: Any = None
        self._failures_seen = 0

    async def run(self) -> None:
        """Create the schema (retrying while Neo4j is away), then project forever."""
        from resonance_worker.graph import GraphError, Projector, ProjectorConfig
        from resonance_worker.graph.driver import prepare

        delay = SCHEMA_RETRY_FIRST_S
        while True:
            try:
                await prepare(self.driver, database=self.settings.database)
                break
            except GraphError as exc:
                log.warning("neo4j not ready", extra={"error": str(exc), "retry_in_s": round(delay, 1)})
                self.living.feel(PainSource.NEO4J_FAILURE)
                # Doubling with jitter: a fleet of workers restarted together must not retry in step.
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, SCHEMA_RETRY_MAX_S)
        self.projector = Projector(
            self.living.event_log,
            self.driver,
            consumer=self.living.origin,
            config=ProjectorConfig(database=self.settings.database),
        )
        await self.projector.run()

    def feel_failures(self) -> None:
        """Every failed projector attempt since the last look is neo4j pain."""
        if self.projector is None:
            return
        failures = int(self.projector.stats.failures)
        for _ in range(min(10, failures - self._failures_seen)):
            self.living.feel(PainSource.NEO4J_FAILURE)
        self._failures_seen = failures

    async def close(self) -> None:
        await self.driver.close()

    async def query(self, name: str, user: object, args: Mapping[str, Any]) -> Any:
        """One graph query for ``user``; bad arguments → 107, Neo4j down or circuit open → 108."""
        from resonance_worker.graph import GraphError, GraphQueryInputError, queries

        breaker = self.living.circuits["neo4j"]
        now = self.living.clock()
        if not breaker.allow(now):
            raise RpcError(ErrorCode.NOT_AVAILABLE, "the graph is resting (circuit open); retry later")
        if not isinstance(user, str) or not user:
            raise RpcError(ErrorCode.BAD_REQUEST, "user must be a non-empty string")
        database = self.settings.database
        since, until = args.get("since"), args.get("until")
        try:
            result: Any
            if name == "timeline":
                records = await queries.timeline(
                    self.driver, user, since, until, limit=args.get("limit", 1000), database=database
                )
                result = {"states": [r.to_dict() for r in records]}
            elif name == "as_of":
                at: Any = args.get("at")  # the query validates it
                record = await queries.state_as_of(self.driver, user, at, database=database)
                result = {"state": None if record is None else record.to_dict()}
            elif name == "transitions":
                matrix = await queries.transition_matrix(self.driver, user, since, until, database=database)
                result = matrix.to_dict()
            elif name == "time_of_day":
                buckets = await queries.time_of_day(
                    self.driver,
                    user,
                    since,
                    until,
                    utc_offset_minutes=args.get("utc_offset_minutes", 0),
                    database=database,
                )
                result = buckets.to_dict()
            else:
                partners = await queries.resonance_partners(
                    self.driver, user, since, until, database=database
                )
                result = {"partners": [p.to_dict() for p in partners]}
        except GraphQueryInputError as exc:
            raise RpcError(ErrorCode.BAD_REQUEST, str(exc)) from None
        except GraphError as exc:
            breaker.record_failure(self.living.clock())
            self.living.feel(PainSource.NEO4J_FAILURE)
            raise RpcError(ErrorCode.NOT_AVAILABLE, f"the graph is unavailable: {exc}") from None
        breaker.record_success(self.living.clock())
        return result

    def rpc_methods(self) -> dict[str, RpcHandler]:
        def method(name: str) -> RpcHandler:
            async def handle(call: RpcCall) -> Any:
                args = call.data if call.data is not None else {}
                if not isinstance(args, dict):
                    raise RpcError(ErrorCode.BAD_REQUEST, f"graph.{name} takes a JSON object")
                return await self.query(name, call.user, args)  # a person reads their own graph

            return handle

        return {f"graph.{name}": method(name) for name in QUERIES}


def install_graph(app: web.Application, living: Living, settings: Neo4jSettings) -> LivingGraph:
    """RPC methods, server API routes and the projector task."""
    from resonance_worker.transport.api import _authorized

    graph = LivingGraph(living, settings)
    node = living.node
    for method, handler in graph.rpc_methods().items():
        node.rpc_methods.setdefault(method, handler)

    async def api_query(request: web.Request) -> web.Response:
        key = node.settings.api_key
        if key is None:
            return web.json_response({"error": {"code": 108, "message": "server API disabled"}}, status=403)
        if not _authorized(request, key.get_secret_value()):
            return web.json_response({"error": {"code": 101, "message": "unauthorized"}}, status=401)
        name = request.match_info["query"]
        try:
            body = orjson.loads(await request.read() or b"{}")
        except orjson.JSONDecodeError:
            body = None
        if name not in QUERIES or not isinstance(body, dict):
            message = f"unknown graph query {name!r}" if name not in QUERIES else "body must be a JSON object"
            return web.json_response({"error": {"code": 107, "message": message}}, status=400)
        try:
            result = await graph.query(name, body.get("user"), body)
        except RpcError as exc:
            status = 503 if exc.code == ErrorCode.NOT_AVAILABLE else 400
            return web.json_response(
                {"error": {"code": int(exc.code), "message": exc.message}}, status=status
            )
        return web.Response(body=orjson.dumps({"result": result}), content_type="application/json")

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(graph.run())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await graph.close()

    # Registered before the generic /api/{method} route, so these win.
    app.router.add_post("/api/graph.{query}", api_query)
    app.cleanup_ctx.append(lifecycle)
    living.graph = graph
    return graph
