"""Build the Dockerfiles' images without a Docker engine (root, mmdebstrap, overlayfs, chroot).

    python3 -m images.build worker operator    # prints each image's OCI layout directory

Each ``Dockerfile.<name>`` is carried out instruction by instruction, as Docker would:

- ``FROM debian:bookworm-slim``: a minbase Debian from mmdebstrap, with the slim image's dpkg
  excludes (documentation, man pages, locales); ``FROM <stage>``: that stage's layers.
- ``RUN``: ``/bin/sh -c`` in a chroot on an overlay of the stage's layers (proc, dev and the host's
  resolv.conf mounted), with the stage's environment and working directory; the overlay's upper
  directory is the new layer.
- ``COPY`` from the context (the repository, less ``.dockerignore``), from an earlier stage, or from
  ``ghcr.io/astral-sh/uv:<v>``, whose ``/uv`` is taken from the PyPI wheel of the same uv version.
- ``ENV``, ``USER``, ``WORKDIR``, ``EXPOSE``, ``ENTRYPOINT``, ``CMD``: the image config.

Every layer is cached under ``$RESONANCE_CACHE/images`` (default ``~/.cache/resonance-liminal``) by a
hash of its parent's key, the instruction and what it reads (files copied, the stage's config), so the
two images share their Debian layers and a code change rebuilds only the layers after the first
``COPY`` of the code. Layers no image uses any more are removed after each build. One build at a time
(a lock file), so parallel ``make`` runs in several worktrees do not race.
"""

from __future__ import annotations

import argparse
import copy
import fcntl
import fnmatch
import functools
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from images import dockerfile, oci

ROOT = Path(__file__).resolve().parents[1]
MIRRORS = (
    "deb http://deb.debian.org/debian {suite} main",
    "deb http://deb.debian.org/debian {suite}-updates main",
    "deb http://deb.debian.org/debian-security {suite}-security main",
)
# What debian:*-slim leaves out (the debuerreotype slim excludes); later apt installs honour them too.
SLIM_DPKG_OPTIONS = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/lintian/*",
)
BASES = {"debian:bookworm-slim": "bookworm"}
UV_IMAGE = "ghcr.io/astral-sh/uv"
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
# Bump when the way layers are made changes, so old cache entries are not reused.
BUILDER_VERSION = "1"


class BuildError(RuntimeError):
    """A Dockerfile the daemonless build cannot carry out, or a step that failed."""


def cache_dir() -> Path:
    base = os.environ.get("RESONANCE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "resonance-liminal"
    )
    return Path(base) / "images"


def log(message: str) -> None:
    print(f"images: {message}", file=sys.stderr, flush=True)


def _hash(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()[:32]


# --- the build context ----------------------------------------------------------------------------------


def _ignore_patterns() -> list[str]:
    path = ROOT / ".dockerignore"
    if not path.exists():
        return []
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def _ignored(relative: str, patterns: list[str]) -> bool:
    for pattern in patterns:
        if pattern.startswith("**/"):
            if any(fnmatch.fnmatch(part, pattern[3:]) for part in relative.split("/")):
                return True
        elif fnmatch.fnmatch(relative, pattern):
            return True
    return False


def context_files(sources: list[str]) -> list[Path]:
    """The context files a COPY reads, sorted, less ``.dockerignore`` matches."""
    patterns = _ignore_patterns()
    files: list[Path] = []
    for source in sources:
        path = ROOT / source
        if not path.exists():
            raise BuildError(f"COPY source {source!r} is not in the context")
        candidates = [path] if not path.is_dir() else sorted(p for p in path.rglob("*") if not p.is_dir())
        files.extend(p for p in candidates if not _ignored(p.relative_to(ROOT).as_posix(), patterns))
    return files


def _content_hash(files: list[Path]) -> str:
    h = hashlib.sha256()
    for path in files:
        h.update(path.relative_to(ROOT).as_posix().encode() + b"\0")
        h.update(oct(path.stat().st_mode & 0o777).encode() + b"\0")
        h.update(path.read_bytes() if not path.is_symlink() else os.readlink(path).encode())
    return h.hexdigest()


# --- layers ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layer:
    key: str
    root: Path  # the layer's directory (a base rootfs or an overlay upper directory)
    overlay: bool  # True for an upper directory (whiteouts to convert)
    created_by: str

    @property
    def tarball(self) -> Path:
        return self.root.parent / "layer.tar"

    def blob(self) -> oci.Blob:
        """The layer tarball's blob, written once and kept beside the directory."""
        meta = self.root.parent / "layer.json"
        if meta.exists() and self.tarball.exists():
            data = json.loads(meta.read_text())
            return oci.Blob(data["digest"], data["size"], oci.LAYER_MEDIA_TYPE)
        blob = oci.write_layer(self.root, self.tarball, overlay=self.overlay)
        meta.write_text(json.dumps({"digest": blob.digest, "size": blob.size}))
        return blob


@dataclass
class StageResult:
    layers: list[Layer]
    config: dockerfile.Config
    key: str
    history: list[str] = field(default_factory=list)


class Builder:
    """Carries out Dockerfiles with a layer cache in ``cache``. Needs root (mounts, chroot)."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        self.layers_dir = cache / "layers"
        self.used: set[str] = set()

    # -- cache -------------------------------------------------------------------------------------------

    def _cached(
        self, key: str, created_by: str, make: Callable[[Layer], None], *, overlay: bool = True
    ) -> Layer:
        """The layer for ``key``: reused when complete, else made by ``make(layer_dir)``."""
        entry = self.layers_dir / key
        layer = Layer(key, entry / ("rootfs" if not overlay else "upper"), overlay, created_by)
        self.used.add(key)
        if (entry / ".complete").exists():
            return layer
        if entry.exists():
            shutil.rmtree(entry)
        entry.mkdir(parents=True)
        started = time.monotonic()
        log(f"{created_by[:100]}")
        make(layer)
        (entry / "created_by").write_text(created_by)
        (entry / ".complete").touch()
        log(f"  done in {time.monotonic() - started:.0f} s ({key})")
        return layer

    # -- bases -------------------------------------------------------------------------------------------

    def base(self, image: str) -> Layer:
        suite = BASES.get(image)
        if suite is None:
            raise BuildError(f"FROM {image}: the daemonless build knows only {sorted(BASES)}")
        version = subprocess.run(["mmdebstrap", "--version"], capture_output=True, text=True).stdout
        key = _hash(BUILDER_VERSION, "base", suite, *MIRRORS, *SLIM_DPKG_OPTIONS, version)

        def make(layer: Layer) -> None:
            command = [
                "mmdebstrap",
                "--mode=root",
                "--variant=minbase",
                "--format=directory",
                "--quiet",
                *(f"--dpkgopt={o}" for o in SLIM_DPKG_OPTIONS),
                suite,
                str(layer.root),
                *(m.format(suite=suite) for m in MIRRORS),
            ]
            subprocess.run(command, check=True, env={**os.environ, "SOURCE_DATE_EPOCH": "0"})
            # A runtime provides the resolver; keep an empty file to mount it on.
            (layer.root / "etc" / "resolv.conf").write_text("")
            shutil.rmtree(layer.root / "var" / "cache" / "apt", ignore_errors=True)
            (layer.root / "var" / "cache" / "apt").mkdir()

        return self._cached(key, f"FROM {image} (mmdebstrap {suite} minbase, slim)", make, overlay=False)

    # -- instructions ------------------------------------------------------------------------------------

    def _namespace(self, op: dict[str, Any]) -> None:
        """Run one filesystem operation in a private mount namespace (see :func:`_in_namespace`)."""
        command = [
            "unshare",
            "--mount",
            "--pid",
            "--fork",
            "--kill-child",
            sys.executable,
            "-m",
            "images.build",
        ]
        result = subprocess.run([*command, "--in-namespace", json.dumps(op)], cwd=ROOT)
        if result.returncode != 0:
            raise BuildError(f"{op['created_by']} failed with exit code {result.returncode}")

    def _overlay_op(self, layer: Layer, lowers: list[Layer], **op: object) -> None:
        work = layer.root.parent / "work"
        layer.root.mkdir()
        work.mkdir()
        try:
            self._namespace(
                {
                    "upper": str(layer.root),
                    "work": str(work),
                    "lowers": [str(lower.root) for lower in reversed(lowers)],
                    "merged": str(layer.root.parent / "merged"),
                    "created_by": layer.created_by,
                    **op,
                }
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(layer.root.parent / "merged", ignore_errors=True)

    def uv_binary(self, version: str) -> Path:
        """``/uv`` of ``ghcr.io/astral-sh/uv:<version>``: the same binary, from uv's PyPI wheel."""
        target = self.cache / "tools" / f"uv-{version}" / "uv"
        if target.exists():
            return target
        # uv installs its own wheel: the venv uv builds has no pip (`pip download` failed on a fresh machine).
        uv = shutil.which("uv")
        if uv is None:
            raise BuildError("uv is missing: run `make deps` (it installs uv)")
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [uv, "pip", "install", "--quiet", "--python", sys.executable, "--no-deps",
                 "--only-binary", ":all:", "--target", tmp, f"uv=={version}"],
                check=True,
            )  # fmt: skip
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(tmp) / "bin" / "uv", target)
        target.chmod(0o755)
        return target

    def stage(self, stage: dockerfile.Stage, done: dict[str, StageResult]) -> StageResult:
        if stage.base in done:
            parent = done[stage.base]
            result = StageResult(
                list(parent.layers), copy.deepcopy(parent.config), parent.key, list(parent.history)
            )
        else:
            base = self.base(stage.base)
            result = StageResult([base], dockerfile.Config(), base.key, [base.created_by])
        for instruction in stage.instructions:
            config = result.config
            if instruction.is_metadata:
                config.apply(instruction)
                result.key = _hash(result.key, instruction.text)
                result.history.append(instruction.text)
                continue
            state = json.dumps([config.env, config.workdir, config.user], sort_keys=True)
            if instruction.kind == "RUN":
                key = _hash(result.key, instruction.text, state)
                op: dict[str, Any] = {
                    "op": "run",
                    "command": instruction.args[0],
                    "env": config.env_list(),
                    "workdir": config.workdir,
                    "user": config.user,
                }
            else:
                key, op = self._copy_op(instruction, config, done)
                key = _hash(result.key, key, state)
            lowers = list(result.layers)
            layer = self._cached(
                key, instruction.text, functools.partial(self._overlay_op, lowers=lowers, **op)
            )
            result.layers.append(layer)
            result.key = key
            result.history.append(instruction.text)
        return result

    def _copy_op(
        self, instruction: dockerfile.Instruction, config: dockerfile.Config, done: dict[str, StageResult]
    ) -> tuple[str, dict[str, Any]]:
        *sources, dest = instruction.args
        if not dest.startswith("/"):
            dest = os.path.join(config.workdir, dest)
        origin = instruction.flag("from")
        if origin is None:
            files = context_files(sources)
            items = [[str(ROOT / s), (ROOT / s).is_dir()] for s in sources]
            return _hash(instruction.text, _content_hash(files)), {
                "op": "copy",
                "items": items,
                "dest": dest,
                "ignore": _ignore_patterns(),
                "context": str(ROOT),
                "multi": len(sources) > 1,
            }
        if origin in done:
            source = done[origin]
            return _hash(instruction.text, source.key), {
                "op": "copy",
                "from_lowers": [str(layer.root) for layer in reversed(source.layers)],
                "items": [[s, None] for s in sources],
                "dest": dest,
                "multi": len(sources) > 1,
            }
        image, _, version = origin.partition(":")
        if image == UV_IMAGE and sources == ["/uv"]:
            binary = self.uv_binary(version)
            return _hash(instruction.text, _content_hash_one(binary)), {
                "op": "copy",
                "items": [[str(binary), False]],
                "dest": dest,
                "multi": False,
            }
        raise BuildError(f"line {instruction.line}: COPY --from={origin} is not supported here")

    # -- images ------------------------------------------------------------------------------------------

    def image(self, name: str) -> Path:
        """Build ``Dockerfile.<name>`` into ``<cache>/oci/resonance-<name>``; returns the layout dir."""
        stages = dockerfile.parse((ROOT / f"Dockerfile.{name}").read_text())
        done: dict[str, StageResult] = {}
        for stage in stages:
            done[stage.name] = done[str(stage.index)] = self.stage(stage, done)
        final = done[stages[-1].name]
        blobs = [(layer.tarball, layer.blob()) for layer in final.layers]
        config = final.config
        image_config: dict[str, Any] = {
            "Env": config.env_list(),
            "WorkingDir": config.workdir,
        }
        if config.user:
            image_config["User"] = config.user
        if config.entrypoint:
            image_config["Entrypoint"] = config.entrypoint
        if config.cmd:
            image_config["Cmd"] = config.cmd
        if config.exposed_ports:
            image_config["ExposedPorts"] = {p: {} for p in config.exposed_ports}
        layout = self.cache / "oci" / f"resonance-{name}"
        document = oci.image_config(image_config, [b for _, b in blobs], final.history, ARCH)
        digest = oci.write_layout(layout, blobs, document, "dev")
        keys = sorted({layer.key for result in done.values() for layer in result.layers})
        (self.cache / "oci" / f"resonance-{name}.keys.json").write_text(json.dumps(keys))
        log(f"resonance-{name}: {layout} ({digest[:19]}, {len(blobs)} layers)")
        return layout

    def prune(self) -> None:
        """Remove cached layers that no built image uses (their keys files list what is kept)."""
        keep = set(self.used)
        for keys in (self.cache / "oci").glob("*.keys.json"):
            keep.update(json.loads(keys.read_text()))
        for entry in self.layers_dir.iterdir() if self.layers_dir.exists() else []:
            if entry.name not in keep:
                shutil.rmtree(entry, ignore_errors=True)


def _content_hash_one(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextmanager
def _locked(cache: Path) -> Iterator[None]:
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def build(names: list[str]) -> list[Path]:
    """Build the named images (``worker``, ``operator``) and return their layout directories."""
    missing = [tool for tool in ("mmdebstrap", "unshare", "chroot") if shutil.which(tool) is None]
    if missing:
        raise BuildError(f"missing {', '.join(missing)}: run `make deps` (Debian's mmdebstrap, util-linux)")
    if os.geteuid() != 0:
        raise BuildError("the daemonless build mounts overlays and chroots: run it as root")
    cache = cache_dir()
    with _locked(cache):
        builder = Builder(cache)
        layouts = [builder.image(name) for name in names]
        builder.prune()
    return layouts


# --- inside the mount namespace ------------------------------------------------------------------------


def _mount_overlay(lowers: list[str], merged: str, upper: str | None = None, work: str | None = None) -> None:
    os.makedirs(merged, exist_ok=True)
    options = "lowerdir=" + ":".join(lowers)
    if upper is not None:
        options += f",upperdir={upper},workdir={work}"
    elif len(lowers) == 1:
        # A read-only overlay needs two lower directories; a bind mount does for one.
        subprocess.run(["mount", "--bind", "-o", "ro", lowers[0], merged], check=True)
        return
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, merged], check=True)


def _copy_item(source: Path, target: Path, ignore: list[str], context: Path | None) -> None:
    def ignored(directory: str, names: list[str]) -> set[str]:
        if context is None:
            return set()
        rel = Path(directory).relative_to(context).as_posix()
        return {n for n in names if _ignored(n if rel == "." else f"{rel}/{n}", ignore)}

    if source.is_dir() and not source.is_symlink():
        shutil.copytree(source, target, symlinks=True, ignore=ignored, dirs_exist_ok=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)


def _in_namespace(op: dict[str, Any]) -> int:
    """Mount the layer's overlay and carry out a RUN (chroot) or a COPY; called by the builder under
    ``unshare --mount``, so every mount goes away with the process."""
    merged = str(op["merged"])
    lowers = [str(x) for x in op["lowers"]]
    _mount_overlay(lowers, merged, str(op["upper"]), str(op["work"]))
    if op["op"] == "run":
        for mountpoint, args in (("proc", ["-t", "proc", "proc"]), ("dev", ["--rbind", "/dev"])):
            subprocess.run(["mount", *args, os.path.join(merged, mountpoint)], check=True)
        subprocess.run(
            ["mount", "--bind", "/etc/resolv.conf", os.path.join(merged, "etc/resolv.conf")], check=True
        )
        env = [str(e) for e in op["env"]]
        # The host's CA bundle, where the host trusts more than the public roots (an egress proxy): on a
        # tmpfs, so it never reaches a layer, and out of the cache key, like a Docker build secret.
        ca = os.environ.get("SSL_CERT_FILE")
        if ca and os.path.isfile(ca):
            run_dir = os.path.join(merged, "run")
            subprocess.run(["mount", "-t", "tmpfs", "build", run_dir], check=True)
            shutil.copyfile(ca, os.path.join(run_dir, "build-ca.pem"))
            env.append("SSL_CERT_FILE=/run/build-ca.pem")
        workdir = str(op["workdir"])
        os.makedirs(os.path.join(merged, workdir.lstrip("/")), exist_ok=True)
        user = str(op["user"])
        chroot = ["chroot", *([f"--userspec={user}"] if user else []), merged]
        return subprocess.run(
            [*chroot, "/usr/bin/env", "-i", "-C", workdir, *env, "/bin/sh", "-c", str(op["command"])]
        ).returncode
    # COPY: sources from the host (context, uv) or from another stage's layers mounted read-only.
    source_root: Path | None = None
    if "from_lowers" in op:
        source_root = Path(merged + ".from")
        _mount_overlay([str(x) for x in op["from_lowers"]], str(source_root))
    dest = str(op["dest"])
    context = Path(str(op["context"])) if "context" in op else None
    for raw, _ in op["items"]:
        source = Path(raw) if source_root is None else source_root / str(raw).lstrip("/")
        into_dir = dest.endswith("/") or bool(op["multi"]) or (source.is_dir() and not source.is_symlink())
        target = Path(merged, dest.lstrip("/"))
        if into_dir and not source.is_dir():
            target = target / source.name
        _copy_item(source, target, list(op.get("ignore", [])), context)
        if context is not None:  # files from the context belong to root, as Docker's COPY makes them
            subprocess.run(["chown", "-R", "0:0", str(target)], check=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m images.build", description=__doc__.split("\n")[0])
    parser.add_argument("images", nargs="*", default=["worker", "operator"], help="worker, operator")
    parser.add_argument("--in-namespace", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.in_namespace:
        return _in_namespace(json.loads(args.in_namespace))
    try:
        for layout in build(args.images):
            print(layout)
    except (BuildError, dockerfile.DockerfileError, subprocess.CalledProcessError) as exc:
        print(f"images: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
