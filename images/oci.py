"""OCI image layouts: layer tarballs from directories, the config, manifest and index; and the way back
(unpacking a layout's layers onto a directory).

Layers are uncompressed tarballs (``application/vnd.oci.image.layer.v1.tar``): the digest is the
diff ID, and a local layout needs no compression. An overlayfs upper directory is turned into a layer
by :func:`write_layer` with ``overlay=True``: a whiteout (a character device 0/0) becomes an empty
``.wh.<name>`` file and an opaque directory (xattr ``trusted.overlay.opaque=y``) gets a
``.wh..wh..opq`` entry, as the image spec says. :func:`unpack` applies both kinds on the way back.

Entries are written in sorted order with numeric owners and no user or group names, so the same tree
gives the same tarball.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


class LayoutError(ValueError):
    """A layout, manifest or layer that is not what the image spec allows."""


@dataclass(frozen=True)
class Blob:
    digest: str  # "sha256:<hex>"
    size: int
    media_type: str

    def descriptor(self, **annotations: str) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if annotations:
            out["annotations"] = annotations
        return out


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _walk(root: Path) -> Iterator[Path]:
    """Every path under ``root`` (not ``root`` itself), parents before children, names sorted."""
    with os.scandir(root) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        yield Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(Path(entry.path))


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


def write_layer(root: Path, out: Path, *, overlay: bool = False) -> Blob:
    """Write the tree under ``root`` as a layer tarball at ``out``; returns its blob (digest = diff ID).

    With ``overlay`` the tree is an overlayfs upper directory: whiteouts and opaque directories are
    written as OCI whiteout entries.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".partial")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in _walk(root):
            arcname = path.relative_to(root).as_posix()
            st = path.lstat()
            if overlay and _is_whiteout(st):
                info = tarfile.TarInfo((Path(arcname).parent / (WHITEOUT + path.name)).as_posix())
                info.mode = 0o644
                tar.addfile(info)
                continue
            info = tar.gettarinfo(str(path), arcname)
            info.uname = info.gname = ""
            if info.isreg() and info.type != tarfile.LNKTYPE:
                with path.open("rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
            if overlay and info.isdir() and _is_opaque(path):
                marker = tarfile.TarInfo(f"{arcname}/{OPAQUE}")
                marker.mode = 0o644
                tar.addfile(marker)
    os.replace(tmp, out)
    return Blob(_sha256_file(out), out.stat().st_size, LAYER_MEDIA_TYPE)


def _put_blob(layout: Path, data: bytes, media_type: str) -> Blob:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = layout / "blobs" / "sha256" / digest.split(":", 1)[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return Blob(digest, len(data), media_type)


def _link_blob(layout: Path, source: Path, blob: Blob) -> None:
    path = layout / "blobs" / "sha256" / blob.digest.split(":", 1)[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return
    try:
        os.link(source, path)
    except OSError:
        shutil.copyfile(source, path)


def image_config(config: dict[str, Any], layers: list[Blob], history: list[str], arch: str) -> dict[str, Any]:
    """The OCI image config: ``config`` holds User, Env, Entrypoint, Cmd, WorkingDir, ExposedPorts."""
    return {
        "architecture": arch,
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [b.digest for b in layers]},
        "history": [{"created_by": line} for line in history],
    }


def write_layout(layout: Path, layers: list[tuple[Path, Blob]], config: dict[str, Any], ref: str) -> str:
    """Write (replace) an OCI image layout holding one image tagged ``ref``; returns the manifest digest.

    ``layers`` are (tarball, blob) pairs from :func:`write_layer`, lowest first; the tarballs are
    hard-linked into ``blobs/`` when they are on the same filesystem.
    """
    if layout.exists():
        shutil.rmtree(layout)
    layout.mkdir(parents=True)
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    for path, blob in layers:
        _link_blob(layout, path, blob)
    config_blob = _put_blob(layout, json.dumps(config, sort_keys=True).encode(), CONFIG_MEDIA_TYPE)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": config_blob.descriptor(),
        "layers": [blob.descriptor() for _, blob in layers],
    }
    manifest_blob = _put_blob(layout, json.dumps(manifest, sort_keys=True).encode(), MANIFEST_MEDIA_TYPE)
    index = {
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": [manifest_blob.descriptor(**{REF_NAME: ref})],
    }
    (layout / "index.json").write_text(json.dumps(index, sort_keys=True))
    return manifest_blob.digest


@dataclass(frozen=True)
class Image:
    """One image read back from a layout: its config and the paths of its layer blobs, lowest first."""

    manifest_digest: str
    config: dict[str, Any]
    layers: tuple[Path, ...]


def _blob_path(layout: Path, digest: str, *, verify: bool) -> Path:
    algorithm, _, hexdigest = digest.partition(":")
    if algorithm != "sha256" or len(hexdigest) != 64:
        raise LayoutError(f"unsupported digest {digest!r}")
    path = layout / "blobs" / "sha256" / hexdigest
    if not path.is_file():
        raise LayoutError(f"blob {digest} is missing from {layout}")
    if verify and _sha256_file(path) != digest:
        raise LayoutError(f"blob {digest} does not match its content")
    return path


def read_layout(layout: Path, ref: str | None = None, *, verify: bool = True) -> Image:
    """Read the image tagged ``ref`` (or the only one); ``verify`` checks every blob's digest."""
    if json.loads((layout / "oci-layout").read_text()).get("imageLayoutVersion") != "1.0.0":
        raise LayoutError(f"{layout} is not an OCI image layout 1.0.0")
    manifests = json.loads((layout / "index.json").read_text())["manifests"]
    if ref is not None:
        manifests = [m for m in manifests if m.get("annotations", {}).get(REF_NAME) == ref]
    if len(manifests) != 1:
        raise LayoutError(f"{layout}: expected one image tagged {ref!r}, found {len(manifests)}")
    digest = manifests[0]["digest"]
    manifest = json.loads(_blob_path(layout, digest, verify=verify).read_text())
    config = json.loads(_blob_path(layout, manifest["config"]["digest"], verify=verify).read_text())
    layers = []
    for descriptor in manifest["layers"]:
        if descriptor["mediaType"] != LAYER_MEDIA_TYPE:
            raise LayoutError(f"layer media type {descriptor['mediaType']} is not supported")
        layers.append(_blob_path(layout, descriptor["digest"], verify=verify))
    if [d["digest"] for d in manifest["layers"]] != config["rootfs"]["diff_ids"]:
        raise LayoutError("the config's diff IDs do not match the manifest's layers")
    return Image(digest, config, tuple(layers))


def _safe_target(dest: Path, name: str) -> Path:
    parts = Path(name).parts
    if Path(name).is_absolute() or ".." in parts:
        raise LayoutError(f"layer entry {name!r} escapes the root")
    return dest.joinpath(*parts)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def apply_layer(tarball: Path, dest: Path) -> None:
    """Apply one layer onto ``dest``: whiteouts remove, opaque markers empty a directory, then the
    rest is extracted by GNU tar with numeric owners and modes (run as root to keep owners)."""
    removals: list[Path] = []
    with tarfile.open(tarball) as tar:
        for member in tar:  # headers only: the data of an uncompressed tarball is skipped by seeking
            target = _safe_target(dest, member.name)
            if target.name == OPAQUE:
                removals.extend(target.parent.iterdir() if target.parent.is_dir() else [])
            elif target.name.startswith(WHITEOUT):
                removals.append(target.parent / target.name[len(WHITEOUT) :])
    for path in removals:
        _remove(path)
    subprocess.run(
        [
            "tar",
            "--extract",
            "--file",
            str(tarball),
            "--directory",
            str(dest),
            "--numeric-owner",
            "--same-permissions",
            "--same-owner",
            "--exclude=.wh.*",
            "--exclude=*/.wh.*",
        ],
        check=True,
    )


def unpack(layout: Path, dest: Path, ref: str | None = None) -> Image:
    """Unpack the image's layers onto ``dest`` (created) and return the image read."""
    image = read_layout(layout, ref)
    dest.mkdir(parents=True, exist_ok=True)
    dest.chmod(0o755)  # the image's "/" (layers carry no entry for it)
    for layer in image.layers:
        apply_layer(layer, dest)
    return image


def layer_names(tarball: Path) -> list[str]:
    """The entry names of a layer, in order (for tests and inspection)."""
    with tarfile.open(tarball) as tar:
        return tar.getnames()


def read_member(tarball: Path, name: str) -> bytes | None:
    """The content of one regular file in a layer, or None when the layer does not carry it."""
    with tarfile.open(tarball) as tar:
        try:
            member = tar.getmember(name)
        except KeyError:
            return None
        f = tar.extractfile(member)
        return None if f is None else f.read()
