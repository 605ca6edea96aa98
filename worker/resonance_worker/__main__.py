"""``resonance-worker``: start one worker process."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import secrets
import signal
import sys
import threading
import time
import traceback

from aiohttp import web
from pydantic import SecretStr, ValidationError

from resonance_worker import __version__
from resonance_worker.domain.biometrics import scientific
from resonance_worker.domain.consent import DataKind
from resonance_worker.errors import ConfigError
from resonance_worker.errortracking import configure_error_tracking
from resonance_worker.log import configure_logging
from resonance_worker.settings import WebSocketServer, WorkerSettings
from resonance_worker.tokens import mint_connection_token
from resonance_worker.tracing import configure_tracing
from resonance_worker.transport.app import create_app
from resonance_worker.transport.drain import DrainRequest
from resonance_worker.transport.keys import DRAINER, LIVING, NODE
from resonance_worker.transport.proxyproto import ProxyProtocolSite
from resonance_worker.transport.wsnative import NativeSite, native_protocol_factory

log = logging.getLogger("resonance.worker")


def load_settings() -> tuple[WorkerSettings, bool]:
    """Settings from the environment (a random JWT secret when none is set), and
    whether a demo token may be printed: only in development mode or with that
    throw-away secret - a token valid for a real secret must not land in pod logs."""
    settings = WorkerSettings()
    if settings.jwt_secret is None:
        settings = settings.model_copy(update={"jwt_secret": SecretStr(secrets.token_urlsafe(32))})
        return settings, True
    return settings, settings.dev_mode


def banner(settings: WorkerSettings, port: int, *, demo_token: bool = True) -> str:
    """How to connect, with a demo token when allowed, printed once the server listens."""
    assert settings.jwt_secret is not None
    token = (
        # The person trying the demo consents to every kind, so the console shows what is kept about them
        # (baseline, self-understanding, the graph); docs/data-rights.md.
        mint_connection_token(
            settings.jwt_secret.get_secret_value(),
            sub="demo",
            now=time.time(),
            consent=[kind.value for kind in DataKind],
        )
        if demo_token
        else "(set RESONANCE_DEV_MODE=true to print one)"
    )
    base = f"{settings.host}:{port}"
    return "\n".join(
        [
            f"resonance-worker listening on http://{base} (engine: {settings.engine.value})",
            f"  health:    http://{base}/health   ready: http://{base}/ready   metrics: http://{base}/metrics",
            f"  websocket: ws://{base}/connection/websocket",
            f"  console:   http://{base}/" + (f"#token={token}" if demo_token else ""),
            f"  demo token (user 'demo', valid 1 h): {token}",
            "  quickstart (pip install centrifuge-python):",
            f"    client = centrifuge.Client('ws://{base}/connection/websocket', token=TOKEN)",
            "    await client.connect(); sub = client.new_subscription('chat:index'); await sub.subscribe()",
        ]
    )


def shutdown_drain_request(settings: WorkerSettings, process_index: int = 0) -> DrainRequest:
    """The drain SIGTERM starts when no operator asked for one: this Pod alone, its own
    budget - shared by its processes when there are several."""
    return DrainRequest(
        budget_per_second=settings.shutdown_drain_budget_per_second,
        pods=settings.processes,
        pod_index=process_index,
        window_seconds=settings.shutdown_drain_seconds,
        deadline_seconds=settings.shutdown_drain_deadline_seconds,
        seed=secrets.randbits(32),
    )


GC_THRESHOLDS = (10_000, 10, 10)
"""Young-generation collections every 10,000 net allocations instead of 700: the
objects of a message in flight die before a collection sees them, so fewer are
promoted and full collections (which walk every connection's objects: ~0.1 s
per 100k on this hardware) stay rare."""


def tune_gc() -> None:
    """Freeze what start-up built (modules, the app, settings: never garbage) out
    of every later collection, and collect the young generations less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def wants_warm_up(settings: WorkerSettings) -> bool:
    """Whether this worker imports the biometric algorithms' SciPy before the first ``bio.push``."""
    return settings.living.enabled and settings.living.bio_warm_up


def _warm_up() -> None:
    started = time.perf_counter()
    try:
        scientific.warm_up()
    except Exception:  # the first bio.push imports (and reports) it again
        log.exception("biometrics warm-up failed")
        return
    log.info("biometrics warmed up", extra={"seconds": round(time.perf_counter() - started, 3)})


def warm_up_in_background(settings: WorkerSettings) -> threading.Thread | None:
    """Import SciPy for the biometric algorithms in a daemon thread (once the worker listens, so
    ``/ready`` never waits for it). A ``bio.push`` arriving meanwhile imports in its executor
    thread, where Python's module lock makes it wait for this import, off the event loop."""
    if not wants_warm_up(settings) or scientific.warm():
        return None
    thread = threading.Thread(target=_warm_up, name="biometrics-warm-up", daemon=True)
    thread.start()
    return thread


def _site(runner: web.AppRunner, settings: WorkerSettings, *, reuse_port: bool) -> web.BaseSite:
    """The listener: aiohttp's own, or one that reads the PROXY protocol header of trusted proxies first;
    either with the native WebSocket shell in front of aiohttp (``websocket_server``)."""
    native = settings.websocket_server is WebSocketServer.NATIVE
    node, living = runner.app[NODE], runner.app.get(LIVING)
    if settings.proxy_protocol:
        return ProxyProtocolSite(
            runner,
            settings.host,
            settings.port,
            trusted_proxies=settings.trusted_proxies,
            backlog=4096,
            reuse_port=reuse_port,
            make_protocol=(lambda server: native_protocol_factory(server, node, living)) if native else None,
        )
    if native:
        return NativeSite(
            runner, node, living, settings.host, settings.port, backlog=4096, reuse_port=reuse_port
        )
    return web.TCPSite(runner, settings.host, settings.port, backlog=4096, reuse_port=reuse_port)


async def serve(
    settings: WorkerSettings, *, demo_token: bool = True, process_index: int | None = None
) -> None:
    """Serve until SIGINT or SIGTERM, drain, then clean up. A second signal skips
    what is left of the drain. ``process_index``: this process's place among
    ``settings.processes`` sharing the port (``None``: the only one)."""
    stop = asyncio.Event()
    hurry = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        (hurry if stop.is_set() else stop).set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    tune_gc()
    # A deep accept queue: a reconnect wave brings thousands of handshakes at once;
    # the default of 128 resets them.
    site = _site(runner, settings, reuse_port=process_index is not None)
    await site.start()
    port = runner.addresses[0][1] if runner.addresses else settings.port
    if not process_index:
        print(banner(settings, port, demo_token=demo_token), flush=True)
    warm_up_in_background(settings)
    try:
        await stop.wait()
        # Hand the clients over within the reconnect budget (or follow the drain
        # the operator already started), still answering /ready (503), /drain and
        # /metrics; new WebSocket connections are refused meanwhile.
        drainer = app[DRAINER]
        drainer.start(shutdown_drain_request(settings, process_index or 0), time.time())
        leaving = asyncio.create_task(drainer.leave())
        hurrying = asyncio.create_task(hurry.wait())
        await asyncio.wait((leaving, hurrying), return_when=asyncio.FIRST_COMPLETED)
        if not leaving.done():
            leaving.cancel()
            await drainer.close_remaining()
        hurrying.cancel()
        await site.stop()
    finally:
        await runner.cleanup()


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line: only ``--help`` and ``--version``, both answered before any setting
    is read (settings come from the environment, never from arguments)."""
    parser = argparse.ArgumentParser(
        prog="resonance-worker",
        description="A Centrifugo-protocol WebSocket worker for resonance apps.",
        epilog=(
            "Settings come from RESONANCE_* environment variables (RESONANCE_HOST, RESONANCE_PORT, "
            "RESONANCE_ENGINE=memory|redis, RESONANCE_REDIS_URL, RESONANCE_JWT_SECRET, ...); every "
            "one is listed in docs/settings.md. Without RESONANCE_JWT_SECRET a random secret is made "
            "and a demo token signed with it is printed."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    parse_arguments(argv)
    try:
        settings, demo_token = load_settings()
    except ValidationError as exc:
        print(f"resonance-worker: invalid settings:\n{exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    configure_logging(settings.log_level, json_lines=settings.log_json)
    if settings.processes > 1:
        raise SystemExit(supervise(settings, demo_token))
    run(settings, demo_token)


def run(settings: WorkerSettings, demo_token: bool, process_index: int | None = None) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency everywhere but Windows
        runner = asyncio.run
    else:
        runner = uvloop.run
    # Per process (after a fork): the SDK's export thread does not survive one.
    stop_tracing = configure_tracing(
        settings.tracing, service=settings.tracing.service_name, node=settings.worker_name
    )
    stop_error_tracking = configure_error_tracking(settings.sentry, node=settings.worker_name)
    try:
        runner(serve(settings, demo_token=demo_token, process_index=process_index))
    except ConfigError as exc:
        print(f"resonance-worker: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    finally:
        stop_tracing()
        stop_error_tracking()


def supervise(settings: WorkerSettings, demo_token: bool) -> int:
    """Fork ``settings.processes`` workers listening on one port (``SO_REUSEPORT``: the
    kernel spreads connections over them; the Redis engine connects them), pass SIGTERM
    and SIGINT on, and return the first failing worker's exit code (0 when all ended
    cleanly). When one fails the others are stopped too, so the Pod restarts whole."""
    if wants_warm_up(settings):
        # Once, before the fork: the processes share its pages (as every module imported at start-up).
        scientific.warm_up()
    children: dict[int, int] = {}
    for index in range(settings.processes):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child's coverage ends with os._exit
            code = 0
            try:
                run(settings, demo_token and index == 0, process_index=index)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children[pid] = index

    def pass_on(signum: int, _frame: object = None) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, pass_on)
    failure = 0
    while children:
        pid, status = os.wait()
        children.pop(pid, None)
        code = os.waitstatus_to_exitcode(status)
        if code != 0 and not failure:
            failure = code if code > 0 else 1
            pass_on(signal.SIGTERM)
    return failure


if __name__ == "__main__":
    main()
