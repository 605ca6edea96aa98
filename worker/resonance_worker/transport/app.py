"""Builds the aiohttp application from settings and an engine."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from resonance_worker.engines import Engine, build_engine
from resonance_worker.errors import EngineError
from resonance_worker.metrics import WorkerMetrics
from resonance_worker.settings import WorkerSettings

log = logging.getLogger("resonance.worker.http")

SETTINGS = web.AppKey("settings", WorkerSettings)
ENGINE = web.AppKey("engine", Engine)
METRICS = web.AppKey("metrics", WorkerMetrics)


def create_app(settings: WorkerSettings, *, engine: Engine | None = None) -> web.Application:
    """The worker application. The engine is started and closed with the app."""
    app = web.Application()
    app[SETTINGS] = settings
    app[ENGINE] = engine if engine is not None else build_engine(settings)
    app[METRICS] = WorkerMetrics()
    app.cleanup_ctx.append(_engine_lifecycle)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics)
    return app


async def _engine_lifecycle(app: web.Application) -> AsyncIterator[None]:
    engine = app[ENGINE]
    await engine.start()
    log.info("engine started", extra={"engine": engine.name})
    yield
    await engine.close()


async def health(request: web.Request) -> web.Response:
    """Liveness: the process serves HTTP. Never depends on outside services."""
    return web.json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    """Readiness: the engine is reachable, so new clients can be served."""
    engine = request.app[ENGINE]
    metrics = request.app[METRICS]
    try:
        await engine.ping()
    except EngineError as exc:
        metrics.ready.set(0)
        return web.json_response(
            {"status": "unavailable", "engine": engine.name, "error": str(exc)}, status=503
        )
    metrics.ready.set(1)
    return web.json_response({"status": "ready", "engine": engine.name})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition of this worker's registry."""
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})
