"""The web console (``web/``): built with its own npm lock and esbuild, served by the worker itself.

``build_console`` runs ``npm ci`` only when ``web/node_modules`` is missing or older than the lock, then the
one esbuild call (``node build.mjs``, about a second). ``packaged_console`` keeps the build inside the worker
package (where ``make console`` puts it and the worker serves it from) up to date with the sources.
``source_hash`` recomputes, in Python, the hash ``build.mjs`` writes into ``build.json``, so a test can
prove a bundle was built from the tree's sources. ``type_check`` runs ``tsc --strict`` incrementally, its
build info cached under ``~/.cache/resonance-liminal/web-tsc/`` (about 15 s cold, a few warm).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
PACKAGED = ROOT / "worker" / "resonance_worker" / "console_assets"
"""= resonance_worker.transport.console.PACKAGED (a test checks they agree)."""
CACHE = Path(os.environ.get("RESONANCE_CACHE", Path.home() / ".cache" / "resonance-liminal"))


def npm_ci(web: Path = WEB) -> None:
    lock = web / "package-lock.json"
    marker = web / "node_modules" / ".package-lock.json"
    if not marker.exists() or lock.stat().st_mtime > marker.stat().st_mtime:
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=web, check=True)


def build_console(out: Path, *, encoding: str = "json", web: Path = WEB) -> dict[str, object]:
    """Build the console into ``out``; returns its build.json."""
    npm_ci(web)
    env = {**os.environ, "RESONANCE_CONSOLE_OUT": str(out), "RESONANCE_CONSOLE_ENCODING": encoding}
    subprocess.run(["node", "build.mjs"], cwd=web, check=True, env=env, capture_output=True)
    info: dict[str, object] = json.loads((out / "build.json").read_text())
    return info


def type_check(web: Path = WEB) -> subprocess.CompletedProcess[str]:
    """``tsc --noEmit`` over ``web/src`` (tsconfig.json: strict). Incremental: tsc keeps each file's hash in
    the build info and re-checks what changed, so the cache can only save time; one file per checkout."""
    checkout = hashlib.sha256(str(web.resolve()).encode()).hexdigest()[:12]
    info = CACHE / "web-tsc" / f"{checkout}.tsbuildinfo"
    info.parent.mkdir(parents=True, exist_ok=True)
    command = [
        "node",
        "node_modules/typescript/bin/tsc",
        "--noEmit",
        "-p",
        ".",
        "--incremental",
        "--tsBuildInfoFile",
        str(info),
    ]
    return subprocess.run(command, cwd=web, capture_output=True, text=True)


def _files(directory: Path) -> list[Path]:
    # As build.mjs: every file under the directory, sorted by the whole path (JavaScript's default sort
    # compares UTF-16 code units, which for these ASCII names is Python's order).
    return sorted((p for p in directory.rglob("*") if p.is_file()), key=str)


def source_hash(web: Path = WEB) -> str:
    """The same hash as ``sourceHash()`` in web/build.mjs."""
    digest = hashlib.sha256()
    inputs = [*_files(web / "src"), web / "index.html", web / "build.mjs", web / "package-lock.json"]
    named = [(path.relative_to(web).as_posix(), path) for path in inputs]
    named.append(("resonance-yjs/index.mjs", web.parent / "clients" / "yjs-provider" / "index.mjs"))
    for name, path in named:
        digest.update(name.encode() + b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


@contextlib.contextmanager
def _building(web: Path = WEB) -> Iterator[None]:
    """Held while this checkout's packaged console is checked and (re)built: `make test` runs tests/ in two
    processes, and a build replaces the assets the other one's worker may be serving."""
    checkout = hashlib.sha256(str(web.resolve()).encode()).hexdigest()[:12]
    lock = CACHE / "locks" / f"console-{checkout}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        yield


def packaged_console() -> dict[str, object]:
    """The build the worker serves by default, rebuilt unless it already comes from these sources (JSON).
    ``make test``'s set-up builds it (``make test-tools``), so during the tests this only checks."""
    record = PACKAGED / "build.json"
    with _building():
        if record.is_file():
            info: dict[str, object] = json.loads(record.read_text())
            if info.get("source_sha256") == source_hash() and info.get("encoding") == "json":
                return info
        return build_console(PACKAGED)
