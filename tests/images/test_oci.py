"""OCI layers and layouts on real files: an overlayfs upper directory with a deleted file and a
replaced directory becomes whiteout entries, and unpacking the layers gives the merged tree back."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from images import oci

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="overlay mounts and owners need root (CI is root)")


def _tree(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        out[rel] = "dir" if path.is_dir() else path.read_text()
    return out


@needs_root
def test_overlay_upper_becomes_a_layer_with_whiteouts(tmp_path: Path) -> None:
    lower, upper, work, merged = (tmp_path / n for n in ("lower", "upper", "work", "merged"))
    for d in (lower / "etc", lower / "old", upper, work, merged):
        d.mkdir(parents=True)
    (lower / "etc" / "gone").write_text("deleted above")
    (lower / "etc" / "kept").write_text("kept")
    (lower / "old" / "inner").write_text("hidden by the opaque directory")
    os.symlink("etc/kept", lower / "link")
    script = (
        f"mount -t overlay overlay -o lowerdir={lower},upperdir={upper},workdir={work} {merged}"
        f" && rm {merged}/etc/gone && rm -r {merged}/old && mkdir {merged}/old"
        f" && echo new > {merged}/old/fresh && echo added > {merged}/etc/added"
    )
    subprocess.run(["unshare", "--mount", "sh", "-c", script], check=True)

    base = oci.write_layer(lower, tmp_path / "base.tar")
    top = oci.write_layer(upper, tmp_path / "top.tar", overlay=True)
    names = oci.layer_names(tmp_path / "top.tar")
    assert "etc/.wh.gone" in names
    assert "old/.wh..wh..opq" in names
    assert top.digest.startswith("sha256:") and top.size == (tmp_path / "top.tar").stat().st_size
    # Same tree, same bytes.
    assert oci.write_layer(lower, tmp_path / "again.tar").digest == base.digest

    config = oci.image_config({"User": "10001:10001"}, [base, top], ["base", "top"], "amd64")
    layout = tmp_path / "layout"
    digest = oci.write_layout(
        layout, [(tmp_path / "base.tar", base), (tmp_path / "top.tar", top)], config, "dev"
    )
    rootfs = tmp_path / "rootfs"
    image = oci.unpack(layout, rootfs, "dev")
    assert image.manifest_digest == digest
    assert image.config["config"]["User"] == "10001:10001"
    assert _tree(rootfs) == {
        "etc": "dir",
        "etc/added": "added\n",
        "etc/kept": "kept",
        "link": "kept",
        "old": "dir",
        "old/fresh": "new\n",
    }


def test_layout_checks_digests_and_refs(tmp_path: Path) -> None:
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "f").write_text("x")
    blob = oci.write_layer(tmp_path / "tree", tmp_path / "l.tar")
    layout = tmp_path / "layout"
    oci.write_layout(layout, [(tmp_path / "l.tar", blob)], oci.image_config({}, [blob], [], "amd64"), "dev")
    with pytest.raises(oci.LayoutError, match="expected one image tagged 'other'"):
        oci.read_layout(layout, "other")
    blob_path = layout / "blobs" / "sha256" / blob.digest.split(":")[1]
    blob_path.unlink()  # a hard link: replace it by different bytes
    blob_path.write_bytes(b"tampered")
    with pytest.raises(oci.LayoutError, match="does not match its content"):
        oci.read_layout(layout)
    index = json.loads((layout / "index.json").read_text())
    assert index["manifests"][0]["annotations"][oci.REF_NAME] == "dev"


def test_a_layer_entry_escaping_the_root_is_refused(tmp_path: Path) -> None:
    import tarfile

    with tarfile.open(tmp_path / "evil.tar", "w") as tar:
        info = tarfile.TarInfo("../outside")
        tar.addfile(info)
    with pytest.raises(oci.LayoutError, match="escapes the root"):
        oci.apply_layer(tmp_path / "evil.tar", tmp_path / "root")
