"""The worker serves the web console at ``/`` (transport/console.py): a build laid out as build.mjs lays it
out, served over a real socket; without a build the worker still starts and ``/`` says how to build it.
(The real bundle in real Chromium is tests/browser.)"""

from __future__ import annotations

import gzip
import html
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from resonance_worker.settings import WorkerSettings
from resonance_worker.transport.app import create_app
from resonance_worker.transport.console import IMMUTABLE, PACKAGED, ConsoleFiles

from tests.harness import console as harness
from tests.harness.worker import JWT_SECRET

SCRIPT = b"console.log('the console');" * 40


def lay_out_a_build(directory: Path) -> Path:
    """index.html naming its hashed assets, build.json, the assets with their gzipped copies."""
    (directory / "assets").mkdir(parents=True)
    (directory / "index.html").write_text(
        '<!doctype html><link rel="stylesheet" href="assets/app-B.css">'
        '<script type="module" src="assets/app-A.js"></script>'
    )
    (directory / "build.json").write_text(json.dumps({"source_sha256": "ab", "encoding": "json"}))
    (directory / "assets" / "app-A.js").write_bytes(SCRIPT)
    (directory / "assets" / "app-A.js.gz").write_bytes(gzip.compress(SCRIPT))
    (directory / "assets" / "app-B.css").write_text("body{}")
    (directory.parent / "secret.txt").write_text("not for the web")
    return directory


@asynccontextmanager
async def serving(**settings: Any) -> AsyncIterator[Callable[..., Any]]:
    app = create_app(
        WorkerSettings(_env_file=None, jwt_secret=JWT_SECRET, port=0, **settings)  # type: ignore[call-arg]
    )
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    async with aiohttp.ClientSession(auto_decompress=False) as http:

        async def get(path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
            async with http.get(base + path, headers=headers) as response:
                return response.status, dict(response.headers), await response.read()

        try:
            yield get
        finally:
            await runner.cleanup()


async def test_the_page_is_never_cached_and_talks_to_its_own_origin_only(tmp_path: Path) -> None:
    async with serving(console_dir=lay_out_a_build(tmp_path / "console"), dev_mode=True) as get:
        status, headers, body = await get("/")
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        assert b"assets/app-A.js" in body
        assert headers["Cache-Control"] == "no-cache"
        csp = headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert headers["Referrer-Policy"] == "no-referrer"
        status, headers, body = await get("/config.json")
        assert status == 200 and json.loads(body) == {"dev_mode": True}
        assert headers["Cache-Control"] == "no-store"
        status, headers, body = await get("/build.json")
        assert status == 200 and json.loads(body)["source_sha256"] == "ab"
        assert headers["Cache-Control"] == "no-cache"


async def test_hashed_assets_are_cached_for_a_year_and_sent_gzipped_when_accepted(tmp_path: Path) -> None:
    async with serving(console_dir=lay_out_a_build(tmp_path / "console")) as get:
        status, headers, body = await get("/assets/app-A.js", **{"Accept-Encoding": "gzip"})
        assert status == 200 and headers["Cache-Control"] == IMMUTABLE
        assert headers["Content-Encoding"] == "gzip" and gzip.decompress(body) == SCRIPT
        assert "javascript" in headers["Content-Type"]
        status, headers, body = await get("/assets/app-A.js", **{"Accept-Encoding": "identity"})
        assert status == 200 and body == SCRIPT and "Content-Encoding" not in headers
        status, headers, _ = await get("/assets/app-B.css")
        assert status == 200 and headers["Content-Type"].startswith("text/css")
        status, _, body = await get("/config.json")
        assert json.loads(body) == {"dev_mode": False}


async def test_only_the_builds_own_assets_are_served(tmp_path: Path) -> None:
    async with serving(console_dir=lay_out_a_build(tmp_path / "console")) as get:
        unknown = ("/assets/app-C.js", "/assets/app-A.js.gz", "/assets/..%2Fbuild.json")
        unknown += ("/assets/..%2F..%2Fsecret.txt",)
        for path in unknown:
            status, _, body = await get(path)
            assert status == 404, path
            assert b"not for the web" not in body
        assert (await get("/index.html"))[0] == 404  # the page is /, once


async def test_without_a_build_the_worker_starts_and_says_how_to_build_the_console(tmp_path: Path) -> None:
    empty = tmp_path / "nothing <built> & here"  # the page names it, escaped
    empty.mkdir()
    assert not ConsoleFiles.read(empty).built
    async with serving(console_dir=empty) as get:
        status, headers, body = await get("/")
        assert status == 503 and headers["Content-Type"].startswith("text/html")
        assert b"The console has not been built" in body and b"make console" in body
        assert html.escape(str(empty)).encode() in body and b"<built>" not in body
        assert (await get("/build.json"))[0] == 404
        assert (await get("/health"))[0] == 200
        assert (await get("/config.json"))[0] == 200


def test_the_packaged_console_lives_in_the_worker_package_and_is_shipped_in_the_wheel() -> None:
    root = Path(__file__).resolve().parents[3]
    assert PACKAGED == root / "worker" / "resonance_worker" / "console_assets" == harness.PACKAGED
    pyproject = (root / "pyproject.toml").read_text()
    # git-ignored, yet shipped:
    assert 'artifacts = ["worker/resonance_worker/console_assets/**"]' in pyproject
    assert "/worker/resonance_worker/console_assets/" in (root / ".gitignore").read_text().splitlines()


def test_the_worker_image_builds_the_console_into_the_package() -> None:
    """Dockerfile.worker: a console stage runs build.mjs from the committed lock, and its output lands
    where the worker serves it from before the wheel is built; host builds stay out of the context."""
    root = Path(__file__).resolve().parents[3]
    dockerfile = (root / "Dockerfile.worker").read_text()
    assert "npm ci" in dockerfile and "RESONANCE_CONSOLE_OUT=/console node build.mjs" in dockerfile
    copy = "COPY --from=console /console ./worker/resonance_worker/console_assets"
    wheel = "uv pip install --python /app/.venv/bin/python --no-deps ."
    assert dockerfile.index(copy) < dockerfile.index(wheel)
    ignored = (root / ".dockerignore").read_text().splitlines()
    assert {"web/node_modules", "worker/resonance_worker/console_assets"} <= set(ignored)
