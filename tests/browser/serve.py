"""Serves a built console next to a real worker until the worker serves it itself at ``/``.

Static files from the build directory; ``config.json`` saying where the worker's WebSocket is and
that it is in development mode; ``/token``, ``/api/*`` and ``/thyroid/status`` forwarded to the worker,
so the page calls them on its own origin exactly as it will on the worker.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import aiohttp
from aiohttp import web

from tests.harness.processes import free_port


class ConsoleServer:
    def __init__(self, dist: Path, worker_http: str, worker_ws: str, *, dev_mode: bool = True) -> None:
        self.dist = dist
        self.worker_http = worker_http
        self.config = {"dev_mode": dev_mode, "websocket": worker_ws}
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    async def _forward(self, request: web.Request) -> web.Response:
        async with (
            aiohttp.ClientSession() as http,
            http.request(
                request.method,
                self.worker_http + request.rel_url.path_qs,
                data=await request.read(),
                headers={
                    k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")
                },
            ) as answer,
        ):
            return web.Response(
                body=await answer.read(), status=answer.status, content_type=answer.content_type
            )

    async def _index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(self.dist / "index.html")

    async def _config(self, request: web.Request) -> web.Response:
        return web.json_response(self.config)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/config.json", self._config)
        app.router.add_post("/token", self._forward)
        app.router.add_post("/api/{method}", self._forward)
        app.router.add_get("/thyroid/status", self._forward)
        app.router.add_get("/", self._index)
        app.router.add_static("/", self.dist)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def start(self) -> ConsoleServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
