"""The web console at ``/`` (issue 16): the built files of ``web/``, served by the worker itself.

``make run`` (and the worker image) build ``web/`` into ``resonance_worker/console_assets/`` (git-ignored,
shipped in the wheel); ``RESONANCE_CONSOLE_DIR`` points elsewhere. What is served:

- ``GET /``: ``index.html``, ``Cache-Control: no-cache`` (it names this build's assets), with a
  Content-Security-Policy that lets the page talk to its own origin only;
- ``GET /assets/<name>``: the hashed bundle (``app-<hash>.js``, ``.css``), cached for a year as
  immutable; a ``.gz`` copy beside each goes to browsers that accept gzip;
- ``GET /config.json``: ``{"dev_mode": …}`` (the demo-token button shows only in development mode);
- ``GET /build.json``: the build's record (the sources' hash, the encoding, the sizes).

The directory is read once, when the app is built. Without a build the worker still starts and ``/``
answers 503 with a page saying how to build the console.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

import resonance_worker
from resonance_worker.settings import WorkerSettings
from resonance_worker.transport.http import json_response

log = logging.getLogger("resonance.worker.console")

PACKAGED = Path(resonance_worker.__file__).resolve().parent / "console_assets"
"""Where ``make console`` (and ``make run``) puts the build."""

NO_CACHE = "no-cache"
IMMUTABLE = "public, max-age=31536000, immutable"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; connect-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
    "script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
PAGE_HEADERS = {
    "Cache-Control": NO_CACHE,
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
ASSET_HEADERS = {"Cache-Control": IMMUTABLE, "X-Content-Type-Options": "nosniff"}

NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Resonance console: not built</title></head>
<body><main><h1>The console has not been built</h1>
<p>This worker runs, but it has no web console to serve: no <code>index.html</code> in
<code>{directory}</code>.</p>
<p>Build it from a clone of the repository with <code>make console</code> (Node.js and npm:
<code>cd web &amp;&amp; npm ci &amp;&amp; node build.mjs</code>), or point
<code>RESONANCE_CONSOLE_DIR</code> at a build. <code>make run</code> builds it when npm is there.</p>
</main></body></html>
"""


@dataclass(frozen=True)
class ConsoleFiles:
    """One build of the console, read from ``directory`` when the app is built."""

    directory: Path
    index: bytes | None
    build: bytes | None
    assets: dict[str, Path] = field(default_factory=dict)
    """Each hashed asset by name; only these names are served (no path from the URL reaches the disk)."""

    @classmethod
    def read(cls, directory: Path) -> ConsoleFiles:
        index = directory / "index.html"
        build = directory / "build.json"
        assets_dir = directory / "assets"
        assets = (
            {p.name: p for p in assets_dir.iterdir() if p.is_file() and not p.name.endswith(".gz")}
            if assets_dir.is_dir()
            else {}
        )
        return cls(
            directory,
            index.read_bytes() if index.is_file() else None,
            build.read_bytes() if build.is_file() else None,
            assets,
        )

    @property
    def built(self) -> bool:
        return self.index is not None


def install_console(app: web.Application, settings: WorkerSettings) -> ConsoleFiles:
    """Add the console's routes to ``app``; a missing build is logged, not fatal."""
    files = ConsoleFiles.read(settings.console_dir or PACKAGED)
    if not files.built:
        log.warning(
            "web console not built: / answers 503 (run make console)",
            extra={"directory": str(files.directory)},
        )
    config_body = {"dev_mode": settings.dev_mode}

    async def index(request: web.Request) -> web.Response:
        if files.index is None:
            page = NOT_BUILT.format(directory=html.escape(str(files.directory))).encode()
            return web.Response(
                body=page, status=503, content_type="text/html", headers={"Cache-Control": NO_CACHE}
            )
        return web.Response(body=files.index, content_type="text/html", headers=PAGE_HEADERS)

    async def config(request: web.Request) -> web.Response:
        response = json_response(config_body)
        response.headers["Cache-Control"] = "no-store"
        return response

    async def build(request: web.Request) -> web.Response:
        if files.build is None:
            raise web.HTTPNotFound(text="the console has not been built")
        return web.Response(
            body=files.build, content_type="application/json", headers={"Cache-Control": NO_CACHE}
        )

    async def asset(request: web.Request) -> web.FileResponse:
        path = files.assets.get(request.match_info["name"])
        if path is None:
            raise web.HTTPNotFound(text="no such asset in this build of the console")
        return web.FileResponse(path, headers=ASSET_HEADERS)

    app.router.add_get("/", index)
    app.router.add_get("/config.json", config)
    app.router.add_get("/build.json", build)
    app.router.add_get("/assets/{name}", asset)
    return files
