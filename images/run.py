"""Run an OCI image's entry point here, as the image's user, in a user-namespace chroot.

    python3 -m images.run ~/.cache/resonance-liminal/images/oci/resonance-worker -e RESONANCE_PORT=8123
    python3 -m images.run LAYOUT --rootfs DIR -- --version     # arguments after -- replace CMD

No container runtime runs here (``podman run`` is refused ``setrlimit``), so this does the part of one
that a smoke test needs: unpack the layers (:func:`images.oci.unpack`), then start the entry point in
new user, mount and PID namespaces with ``/proc`` and ``/dev`` mounted, chrooted into the image,
with the config's ``Env`` (plus ``-e``), ``WorkingDir`` and ``User``. The network namespace is the
host's, so a server in the image listens on the host's loopback.

The user namespace maps IDs 0-65535 onto the same IDs outside, written by this (root) process, since
``newuidmap`` refuses ranges not granted in ``/etc/subuid``: the image's user 10001 is 10001 on the
host, and root inside holds capabilities only over the namespace's own mounts.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from images import oci

ID_MAP = "0 0 65536\n"
# Runs as root of the new user namespace (after the parent wrote the ID maps and said go on stdin).
_INIT = r"""
set -eu
read -r _go
root=$1 workdir=$2 user=$3 read_only=$4 tmpfs=$5 binds=$6
shift 6
mount --rbind "$root" "$root"
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
if [ "$read_only" = 1 ]; then mount -o remount,bind,ro "$root"; fi
for dir in $tmpfs; do mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root$dir"; done
for bind in $binds; do
  mkdir -p "$root${bind#*=}"
  mount --bind -o ro "${bind%%=*}" "$root${bind#*=}"
done
exec chroot ${user:+--userspec=$user} "$root" /usr/bin/env -i -C "$workdir" "$@" </dev/null
"""


class RunError(RuntimeError):
    """The image cannot be started here."""


def _userspec(user: str) -> str:
    """``uid[:gid]`` as chroot wants it; a user name is left to chroot to look up in the image."""
    return user if ":" in user or not user else f"{user}:{user}" if user.isdigit() else user


def command_line(
    config: dict[str, Any], args: list[str] | None, env: dict[str, str], entrypoint: list[str] | None = None
) -> list[str]:
    """``KEY=value``... followed by Entrypoint + (args or Cmd): what ``env -i`` runs in the image.
    ``entrypoint`` replaces the image's (and then its Cmd), as ``docker run --entrypoint`` does."""
    image_env = dict(e.split("=", 1) for e in config.get("Env", []))
    image_env.update(env)
    if entrypoint is not None:
        argv = list(entrypoint) + list(args or [])
    else:
        argv = list(config.get("Entrypoint") or []) + list(
            args if args is not None else config.get("Cmd") or []
        )
    if not argv:
        raise RunError("the image has neither an entry point nor a command")
    return [f"{k}={v}" for k, v in image_env.items()] + argv


def prepare(layout: Path, rootfs: Path) -> oci.Image:
    """Unpack ``layout`` onto ``rootfs`` unless the same image is already there (a marker file names
    the manifest digest unpacked); a different image replaces the directory."""
    marker = rootfs.with_name(rootfs.name + ".unpacked")
    image = oci.read_layout(layout, verify=False)
    if marker.exists() and marker.read_text() == image.manifest_digest and rootfs.is_dir():
        return image
    marker.unlink(missing_ok=True)
    if rootfs.exists():
        shutil.rmtree(rootfs)
    image = oci.unpack(layout, rootfs)
    marker.write_text(image.manifest_digest)
    return image


def start(
    layout: Path,
    rootfs: Path,
    *,
    args: list[str] | None = None,
    entrypoint: list[str] | None = None,
    env: dict[str, str] | None = None,
    read_only: bool = False,
    tmpfs: tuple[str, ...] = (),
    binds: dict[Path, str] | None = None,
    stdout: Any = None,
    stderr: Any = None,
) -> subprocess.Popen[bytes]:
    """Unpack ``layout`` onto ``rootfs`` (unless it is already there) and start its entry point.

    ``read_only`` mounts the image's root file system read-only and ``tmpfs`` lists directories that
    get an empty tmpfs, as a Pod with ``readOnlyRootFilesystem`` and ``emptyDir`` volumes would.
    ``binds`` mounts host directories read-only (like a Secret volume) at image paths, which must lie
    in one of the ``tmpfs`` directories (so no path of the image is followed out of it).

    Returns the ``unshare`` process, which waits for the entry point and exits with its status. For
    a graceful stop send SIGTERM to the entry point itself (:func:`entry_pid`): as PID 1 of its
    namespace it gets only the signals it handles. Killing ``unshare`` kills it too (``--kill-child``).
    """
    if os.geteuid() != 0:
        raise RunError("writing a user namespace's ID maps for another range needs root")
    for host, target in (binds or {}).items():
        inside = [d for d in tmpfs if target.startswith(d.rstrip("/") + "/")]
        if not inside or ".." in Path(target).parts or " " in f"{host}{target}" or "=" in str(host):
            raise RunError(f"bind target {target} must be a plain path inside one of the tmpfs {tmpfs}")
    config = prepare(layout, rootfs).config["config"]
    argv = command_line(config, args, env or {}, entrypoint)
    process = subprocess.Popen(
        [
            "unshare",
            "--user",
            "--mount",
            "--pid",
            "--fork",
            "--kill-child",
            "--",
            "/bin/sh",
            "-c",
            _INIT,
            "init",
            str(rootfs),
            config.get("WorkingDir") or "/",
            _userspec(config.get("User", "")),
            "1" if read_only else "0",
            " ".join(tmpfs),
            " ".join(f"{host}={target}" for host, target in (binds or {}).items()),
            *argv,
        ],
        stdin=subprocess.PIPE,
        stdout=stdout,
        stderr=stderr,
    )
    try:
        own = os.readlink("/proc/self/ns/user")
        deadline = time.monotonic() + 10
        while os.readlink(f"/proc/{process.pid}/ns/user") == own:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RunError("unshare did not enter a new user namespace")
            time.sleep(0.01)
        for name in ("uid_map", "gid_map"):
            Path(f"/proc/{process.pid}/{name}").write_text(ID_MAP)
        assert process.stdin is not None
        process.stdin.write(b"go\n")
        process.stdin.close()
        process.stdin = None  # so communicate() works on the returned process
    except BaseException:
        process.kill()
        process.wait()
        raise
    return process


def entry_pid(process: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """The host PID of the entry point: ``unshare``'s only child, PID 1 of the new PID namespace
    (``sh``, then ``chroot``, then ``env``, then the entry point, each by exec in the same process)."""
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = children.read_text().split() if children.exists() else []
        if pids:
            return int(pids[0])
        if process.poll() is not None:
            raise RunError(f"the image exited with {process.returncode} before it started")
        time.sleep(0.05)
    raise RunError("the entry point did not start")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m images.run", description=__doc__.split("\n")[0])
    parser.add_argument("layout", type=Path)
    parser.add_argument("--rootfs", type=Path, help="where to unpack (default: <layout>.rootfs)")
    parser.add_argument("-e", "--env", action="append", default=[], help="KEY=value, added to the image's")
    parser.add_argument("--read-only", action="store_true", help="mount the image's root read-only")
    parser.add_argument("--tmpfs", action="append", default=[], help="a directory to mount a tmpfs on")
    parser.add_argument("args", nargs="*", help="after --: replaces the image's CMD")
    ns = parser.parse_args(argv)
    rootfs = ns.rootfs or ns.layout.with_name(ns.layout.name + ".rootfs")
    env = dict(e.split("=", 1) for e in ns.env)
    process = start(
        ns.layout, rootfs, args=ns.args or None, env=env, read_only=ns.read_only, tmpfs=tuple(ns.tmpfs)
    )
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        return process.wait()


if __name__ == "__main__":
    sys.exit(main())
