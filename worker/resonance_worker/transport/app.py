"""Builds the aiohttp application from the settings: the one place that wires the worker.

:func:`create_app` builds the storage (``storage.build_storage``), then :func:`build_worker` wires
the parts in order — the roster, the limits, the channel rules, the living core (when on), the node
(given the living core's pain hooks, limits, namespaces and RPC methods) — and ``create_app`` adds
the routes, the drain and the background tasks.
Nothing is patched into anything afterwards; the app keys are ``transport.keys``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from resonance_worker.domain.auth import TokenVerifier
from resonance_worker.domain.backoff import Backoff
from resonance_worker.domain.biometrics import scientific
from resonance_worker.domain.channels import ChannelRules, NamespaceOptions
from resonance_worker.engines import Engine
from resonance_worker.errors import ConfigError, EngineError
from resonance_worker.living.core import Living, living_namespaces
from resonance_worker.living.limits import FixedLimits, limits_from_settings
from resonance_worker.living.pain import PainHooks
from resonance_worker.living.rights import DataRights
from resonance_worker.living.roster import Roster
from resonance_worker.living.rpc import living_methods
from resonance_worker.metrics import WorkerMetrics
from resonance_worker.rpc import BUILTIN_METHODS, RpcHandler
from resonance_worker.settings import WorkerSettings
from resonance_worker.storage import Storage, build_storage
from resonance_worker.tokens import mint_connection_token
from resonance_worker.transport import api, audit
from resonance_worker.transport.background import run_in_background
from resonance_worker.transport.console import install_console
from resonance_worker.transport.drain import Drainer, install_drain
from resonance_worker.transport.features import install_features
from resonance_worker.transport.http import cors_middleware
from resonance_worker.transport.keys import (
    DRAINER,
    LIVING,
    METRICS,
    NODE,
    POSITION_CHECKER,
    RIGHTS,
    SETTINGS,
    STORAGE,
)
from resonance_worker.transport.living import install_living
from resonance_worker.transport.node import Connection, MessageHandler, Node
from resonance_worker.transport.positions import install_position_check
from resonance_worker.transport.ws import websocket_handler

log = logging.getLogger("resonance.worker.http")


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


def channel_rules(settings: WorkerSettings, extra: Mapping[str, NamespaceOptions]) -> ChannelRules:
    """The settings' namespaces, plus those of ``extra`` the settings do not define (and ``system``,
    for ``system:features``, when there is a feature-flag file)."""
    if settings.features_file is not None:
        extra = {"system": NamespaceOptions(allow_subscribe_for_client=True), **extra}
    return ChannelRules({**extra, **settings.namespaces}, settings.default_namespace)


@dataclass(frozen=True)
class Worker:
    """The parts of one worker, wired: what :func:`create_app` serves."""

    settings: WorkerSettings
    storage: Storage
    metrics: WorkerMetrics
    node: Node
    living: Living | None
    """None when the living core is off."""


def build_worker(
    settings: WorkerSettings,
    storage: Storage,
    *,
    rpc_methods: Mapping[str, RpcHandler] | None = None,
    message_handler: MessageHandler | None = None,
    clock: Callable[[], float] = time.time,
) -> Worker:
    """Wire a worker, in order: roster, limits and channel rules; the living core (when on); the
    node, given the living core's pain hooks, limits, namespaces and RPC methods. ``clock`` is the
    living core's (tests pass their own)."""
    metrics = WorkerMetrics()
    metrics.watch_engine(storage.engine)
    roster: Roster[Connection] = Roster()
    base_limits = limits_from_settings(settings)
    living: Living | None = None
    if settings.living.enabled:
        rules = channel_rules(settings, living_namespaces())
        living = Living(
            settings.living,
            storage,
            origin=settings.worker_name,
            rules=rules,
            present=roster,
            base_limits=base_limits,
            registry=metrics.registry,
            clock=clock,
            data=settings.data,
        )
    else:
        rules = channel_rules(settings, {})
    node = Node(
        settings,
        storage.engine,
        metrics,
        build_verifier(settings),
        rpc_methods={
            **(living_methods(living) if living is not None else {}),
            **BUILTIN_METHODS,
            **(rpc_methods or {}),
        },
        rules=rules,
        roster=roster,
        pain=living.thyroid if living is not None else PainHooks(),
        limits=living.thyroid.limits if living is not None else FixedLimits(base_limits),
        message_handler=message_handler,
    )
    return Worker(settings, storage, metrics, node, living)


def create_app(
    settings: WorkerSettings,
    *,
    storage: Storage | None = None,
    engine: Engine | None = None,
    rpc_methods: Mapping[str, RpcHandler] | None = None,
    message_handler: MessageHandler | None = None,
) -> web.Application:
    """The worker application. The storage is started and closed with the app.

    ``storage`` defaults to what the settings ask for (:func:`~resonance_worker.storage.build_storage`);
    ``engine`` alone stands for a storage of that engine and an in-memory event log (tests).
    ``rpc_methods`` adds named RPC handlers to the built-in ``echo`` and ``whoami`` (see
    ``resonance_worker.rpc``); they win over the living core's methods of the same name."""
    if storage is None:
        storage = Storage.around(engine) if engine is not None else build_storage(settings)
    worker = build_worker(settings, storage, rpc_methods=rpc_methods, message_handler=message_handler)
    node, living = worker.node, worker.living
    app = web.Application()
    app[SETTINGS] = settings
    app[STORAGE] = storage
    app[METRICS] = worker.metrics
    app[NODE] = node
    app[DRAINER] = Drainer(node)
    app.cleanup_ctx.append(_storage_lifecycle)
    app.middlewares.append(cors_middleware(node.origin_policy, cors_paths(settings)))  # outermost
    checker = install_position_check(app, node, settings.position_check_seconds)
    if checker is not None:
        app[POSITION_CHECKER] = checker
    if living is not None:
        app[LIVING] = living
        install_living(app, living, node)
    rights = DataRights(
        storage,
        settings.data,
        journal=living.journal if living is not None else None,
        forget=living.erase if living is not None else None,
    )
    app[RIGHTS] = rights
    if rights.retains:
        run_in_background(
            app, "retention", lambda: _expire_forever(rights, settings.data.retention_check_seconds)
        )
    if settings.jwt_jwks_url:
        run_in_background(app, "jwks-refresh", lambda: _refresh_jwks_forever(app))
    run_in_background(app, "connection-slots", lambda: _refresh_slots_forever(node))
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics_text)
    app.router.add_get("/connection/websocket", websocket_handler)
    app.router.add_post("/token", issue_token)
    app.router.add_post("/api/{method}", api.handle)
    install_drain(app, app[DRAINER])  # POST/GET /drain
    install_features(app, node, settings.features_file, settings.features_poll_seconds)  # GET /features
    install_console(app, settings)  # GET /, /config.json, /build.json, /assets/<name>
    return app


def cors_paths(settings: WorkerSettings) -> frozenset[str]:
    """The endpoints a browser app on an allowed origin reads (``POST /token`` in dev mode only)."""
    return frozenset({"/health", "/thyroid/status", *(("/token",) if settings.dev_mode else ())})


async def _expire_forever(rights: DataRights, period: float) -> None:
    """Retention: every ``period``, remove what is past its kind's retention (every worker does; the
    removals are idempotent)."""
    while True:
        await asyncio.sleep(period)
        try:
            removed = await rights.expire()
            if any(removed.values()):
                log.info("retention removed expired data", extra=removed)
        except EngineError as exc:
            log.warning("retention step failed; next period", extra={"error": str(exc)})


async def _storage_lifecycle(app: web.Application) -> AsyncIterator[None]:
    storage = app[STORAGE]
    await storage.start(app[NODE])
    log.info("engine started", extra={"engine": storage.engine.name})
    yield
    living = app.get(LIVING)
    if living is not None:
        await living.close()  # the journal's last events, before the log's client goes
    await storage.close()


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


async def _refresh_slots_forever(node: Node) -> None:
    """Keep this worker's cluster-wide connection slots alive: three refreshes per TTL, so one
    failed refresh loses none."""
    while True:
        await asyncio.sleep(node.settings.limits.slot_ttl_seconds / 3)
        try:
            await node.refresh_slots()
        except EngineError as exc:
            log.warning("connection slots not refreshed", extra={"error": str(exc)})


JWKS_RETRY_MIN_SECONDS = 1.0


async def _refresh_jwks_forever(app: web.Application) -> None:
    refresh = app[SETTINGS].jwks_refresh_seconds
    # Until the keys are in, every token they sign is refused (3500): try again soon, backing off
    # up to the refresh period.
    retry = Backoff(first_s=JWKS_RETRY_MIN_SECONDS, cap_s=refresh)
    attempt = 0
    while True:
        try:
            await fetch_jwks(app)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            delay = retry.delay(attempt, random.uniform)
            attempt += 1
            log.error("JWKS fetch failed", extra={"error": str(exc), "retry_in_s": round(delay, 2)})
        else:
            delay = refresh
            attempt = 0
        await asyncio.sleep(delay)


async def health(request: web.Request) -> web.Response:
    """Liveness: the process serves HTTP. Never depends on outside services."""
    return web.json_response({"status": "ok"})


def biometrics_state(app: web.Application) -> str:
    """``warm`` (SciPy imported), ``warming`` (the background warm-up of ``resonance-worker`` will import
    it) or ``on first use`` (the first ``bio.push`` will): the worker is ready in every case."""
    if scientific.warm():
        return "warm"
    living = app[SETTINGS].living
    return "warming" if living.enabled and living.bio_warm_up else "on first use"


async def ready(request: web.Request) -> web.Response:
    """Readiness: the engine is reachable and the worker is not draining. On a Redis Cluster, ready while
    some shard is (``shards_down`` names the others; docs/reliability.md, "Redis Cluster")."""
    engine = request.app[STORAGE].engine
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
    body: dict[str, Any] = {
        "status": "ready",
        "engine": engine.name,
        "biometrics": biometrics_state(request.app),
    }
    # A Redis Cluster shard without a primary leaves the node ready for the channels of the other shards.
    shards_down = getattr(getattr(engine, "inner", engine), "shards_down", [])
    if shards_down:
        body["shards_down"] = shards_down
    return web.json_response(body)


async def metrics_text(request: web.Request) -> web.Response:
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
