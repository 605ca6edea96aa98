"""Builds the aiohttp application from settings and an engine."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Mapping

import aiohttp
from aiohttp import web

from resonance_worker.domain.auth import TokenVerifier
from resonance_worker.engines import Engine, build_engine
from resonance_worker.errors import ConfigError, EngineError
from resonance_worker.metrics import WorkerMetrics
from resonance_worker.rpc import BUILTIN_METHODS, RpcHandler
from resonance_worker.settings import WorkerSettings
from resonance_worker.tokens import mint_connection_token
from resonance_worker.transport import api, audit
from resonance_worker.transport.drain import install_drain
from resonance_worker.transport.living import install_living
from resonance_worker.transport.node import MessageHandler, Node
from resonance_worker.transport.positions import install_position_check
from resonance_worker.transport.ws import websocket_handler

log = logging.getLogger("resonance.worker.http")

SETTINGS = web.AppKey("settings", WorkerSettings)
ENGINE = web.AppKey("engine", Engine)
METRICS = web.AppKey("metrics", WorkerMetrics)
NODE = web.AppKey("node", Node)


def build_verifier(settings: WorkerSettings) -> TokenVerifier:
    try:
        return TokenVerifier(
            hmac_secret=settings.jwt_secret.get_secret_value() if settings.jwt_secret else None,
            rsa_public_key_pem=settings.jwt_rsa_public_key,
            ec_public_key_pem=settings.jwt_ec_public_key,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
        )
    except ValueError as exc:
        raise ConfigError(f"JWT key: {exc}") from exc


def create_app(
    settings: WorkerSettings,
    *,
    engine: Engine | None = None,
    rpc_methods: Mapping[str, RpcHandler] | None = None,
    message_handler: MessageHandler | None = None,
) -> web.Application:
    """The worker application. The engine is started and closed with the app.

    ``rpc_methods`` adds named RPC handlers to the built-in ``echo`` and
    ``whoami`` (see ``resonance_worker.rpc``)."""
    app = web.Application()
    app[SETTINGS] = settings
    app[ENGINE] = engine if engine is not None else build_engine(settings)
    app[METRICS] = WorkerMetrics()
    app[NODE] = Node(
        settings,
        app[ENGINE],
        app[METRICS],
        build_verifier(settings),
        {**BUILTIN_METHODS, **(rpc_methods or {})},
        message_handler,
    )
    app.cleanup_ctx.append(_engine_lifecycle)
    install_position_check(app, app[NODE], settings.position_check_seconds)
    if settings.living.enabled:
        install_living(app, app[NODE], settings.living)
    if settings.jwt_jwks_url:
        app.cleanup_ctx.append(_jwks_refresher)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/connection/websocket", websocket_handler)
    app.router.add_post("/token", issue_token)
    app.router.add_post("/api/{method}", api.handle)
    install_drain(app, app[NODE])  # POST/GET /drain
    return app


async def _engine_lifecycle(app: web.Application) -> AsyncIterator[None]:
    engine = app[ENGINE]
    await engine.start(app[NODE])
    log.info("engine started", extra={"engine": engine.name})
    yield
    await engine.close()


async def fetch_jwks(app: web.Application) -> None:
    settings = app[SETTINGS]
    assert settings.jwt_jwks_url is not None
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
        http.get(settings.jwt_jwks_url) as response,
    ):
        response.raise_for_status()
        document = await response.json()
    count = app[NODE].verifier.set_jwks(document)
    log.info("JWKS loaded", extra={"keys": count})


JWKS_RETRY_MIN_SECONDS = 1.0


async def _jwks_refresher(app: web.Application) -> AsyncIterator[None]:
    async def refresh_forever() -> None:
        refresh = app[SETTINGS].jwks_refresh_seconds
        retry = JWKS_RETRY_MIN_SECONDS
        while True:
            try:
                await fetch_jwks(app)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                # Until the keys are in, every token they sign is refused (3500): try again soon,
                # backing off (doubling, with jitter) up to the refresh period.
                delay = min(retry, refresh) * random.uniform(0.5, 1.0)
                retry *= 2
                log.error("JWKS fetch failed", extra={"error": str(exc), "retry_in_s": round(delay, 2)})
            else:
                delay = refresh
                retry = JWKS_RETRY_MIN_SECONDS
            await asyncio.sleep(delay)

    task = asyncio.create_task(refresh_forever())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def health(request: web.Request) -> web.Response:
    """Liveness: the process serves HTTP. Never depends on outside services."""
    return web.json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    """Readiness: the engine is reachable and the worker is not draining."""
    engine = request.app[ENGINE]
    metrics = request.app[METRICS]
    if request.app[NODE].draining:
        metrics.ready.set(0)
        return web.json_response({"status": "draining", "engine": engine.name}, status=503)
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


async def issue_token(request: web.Request) -> web.Response:
    """``POST /token {"user": ..., "ttl": ..., "info": ..., "channels": [...]}``: a
    connection token - only in development mode (403 otherwise). Audited."""
    response = await _issue_token(request)
    audit.record(request, "admin.token", response.status)
    return response


async def _issue_token(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    if not settings.dev_mode:
        return web.json_response({"error": "token issuing is only enabled in development mode"}, status=403)
    if settings.jwt_secret is None:
        return web.json_response({"error": "no HS256 secret configured"}, status=403)
    try:
        body = await request.json() if request.can_read_body else {}
    except ValueError:
        return web.json_response({"error": "body must be JSON"}, status=400)
    if not isinstance(body, dict):
        return web.json_response({"error": "body must be a JSON object"}, status=400)
    user = body.get("user", "")
    ttl = body.get("ttl", 3600)
    channels = body.get("channels")
    if not isinstance(user, str) or not user:
        return web.json_response({"error": "user must be a non-empty string"}, status=400)
    if not isinstance(ttl, int | float) or isinstance(ttl, bool) or ttl <= 0:
        return web.json_response({"error": "ttl must be a positive number of seconds"}, status=400)
    if channels is not None and (
        not isinstance(channels, list) or not all(isinstance(c, str) for c in channels)
    ):
        return web.json_response({"error": "channels must be a list of strings"}, status=400)
    token = mint_connection_token(
        settings.jwt_secret.get_secret_value(),
        sub=user,
        now=time.time(),
        ttl=float(ttl),
        info=body.get("info"),
        channels=channels,
    )
    return web.json_response({"token": token, "user": user, "ttl": ttl})
