"""The living core's HTTP side and its clock: routes, middleware and the background loops.

The living core itself (thyroid, states, rooms, biometrics, the graph service) is
``resonance_worker.living``; ``create_app`` builds it before the node. This module adds to the app:

- a middleware around ``/connection/websocket`` that sheds new connections with HTTP 503 +
  ``Retry-After`` while the thyroid says so (but a client it sent away to reconnect), and charges
  whatever a connection does that hurts to its request (:class:`~resonance_worker.living.origin.PainOrigin`);
  the native WebSocket shell, which serves the upgrades it reads without aiohttp, does both itself
  (``transport/wsnative.py``, ``UpgradeReader._upgrade``);
- ``GET /thyroid/status``; ``POST /api/graph.<query>`` when the graph is configured;
- the loops: the thyroid every ``thyroid_evaluate_seconds``, the rooms every
  ``room_tick_seconds``, and the graph's projector.

See docs/living-core.md, "Wiring", and docs/protocol.md for the RPC methods, channels and codes.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable

from aiohttp import web

from resonance_worker.domain.codes import ErrorCode
from resonance_worker.living.core import Living
from resonance_worker.living.docs import DOC_STEP_SECONDS
from resonance_worker.living.graph import LivingGraph
from resonance_worker.living.origin import PainOrigin, charged_to
from resonance_worker.rpc import RpcError
from resonance_worker.transport.background import run_in_background
from resonance_worker.transport.http import (
    ApiError,
    check_api_key,
    client_ip,
    json_response,
    read_json_object,
    response_for,
)
from resonance_worker.transport.node import Node

log = logging.getLogger("resonance.worker.living")

WEBSOCKET_PATH = "/connection/websocket"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def install_living(app: web.Application, living: Living, node: Node) -> None:
    """Serve ``living`` from ``app``: middleware, routes and loops (it runs until the app's cleanup)."""

    @web.middleware
    def shed(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
        # Not a coroutine: other paths go straight on, holding no frame of this middleware.
        if request.path != WEBSOCKET_PATH:
            return handler(request)
        return shed_or_charge(request, handler)

    async def shed_or_charge(request: web.Request, handler: Handler) -> web.StreamResponse:
        ip = client_ip(request, node.address_policy)
        retry = living.thyroid.shed_retry_after(ip)
        if retry is not None:
            return web.json_response(
                {"error": "overloaded", "retry_after": retry},
                status=503,
                headers={"Retry-After": str(math.ceil(retry))},
            )
        # Whatever hurts from here on (in this task and what it starts) is charged to this client.
        with charged_to(PainOrigin(ip, request.transport)):
            return await handler(request)

    async def status(request: web.Request) -> web.Response:
        return web.json_response(living.thyroid.status(living.clock()))

    app.middlewares.append(shed)
    app.router.add_get("/thyroid/status", status)
    run_in_background(app, "living", lambda: _run(living))
    if living.graph is not None:
        _install_graph(app, living.graph, node)


async def _run(living: Living) -> None:
    """Forever: the thyroid at its period, the rooms at theirs."""
    await asyncio.gather(
        _every(living.settings.thyroid_evaluate_seconds, living.thyroid_step),
        _every(living.settings.room_tick_seconds, living.rooms_step),
        _every(DOC_STEP_SECONDS, living.docs.step),
    )


async def _every(period: float, step: Callable[[], Awaitable[None]]) -> None:
    while True:
        try:
            await step()
        except Exception:  # one failing step must not stop the loop; it hurts instead
            log.exception("living step failed")
        await asyncio.sleep(period)


def _install_graph(app: web.Application, graph: LivingGraph, node: Node) -> None:
    """``POST /api/graph.<query>`` (the server API's key; ``user`` in the body) and the projector."""

    async def api_query(request: web.Request) -> web.Response:
        name = request.match_info["query"]
        try:
            check_api_key(request, node.settings.api_key)
            if name not in graph.queries:
                raise ApiError(ErrorCode.BAD_REQUEST, f"unknown graph query {name!r}")
            body = await read_json_object(request)
            result = await graph.query(name, body.get("user"), body)
        except (ApiError, RpcError) as exc:
            return response_for(exc)
        return json_response({"result": result})

    # Registered before the generic /api/{method} route, so these win.
    app.router.add_post("/api/graph.{query}", api_query)
    run_in_background(app, "graph-projector", graph.run)
