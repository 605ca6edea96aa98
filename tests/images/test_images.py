"""The worker and operator images, built here without Docker from their Dockerfiles (``make images``;
cached, so this is quick after the first build) and run from their OCI layouts.

- The Dockerfiles and the daemonless build install the same packages: both carry out the same
  instructions, the Debian packages come from the one list ``images/debian.packages`` (checked in
  the Dockerfiles and in the built image's dpkg database), and the image's Python environment is
  exactly the extra's hashed lock plus the project.
- The worker image's own entry point serves ``/health`` as UID 10001 on a read-only root, as its Pod
  runs it, and drains and exits 0 on SIGTERM.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from images import build, dockerfile, oci, run
from tests.harness.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
NAMES = ("worker", "operator")
APT_RUN = (
    "apt-get update && grep -v '^#' /tmp/debian.packages | xargs apt-get install -y --no-install-recommends"
    " && rm -rf /var/lib/apt/lists/* /tmp/debian.packages"
)

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("mmdebstrap") is None,
    reason="the daemonless build needs root and mmdebstrap (`make deps` installs it)",
)


@pytest.fixture(scope="session")
def layouts() -> dict[str, Path]:
    built = build.build(list(NAMES))
    return dict(zip(NAMES, built, strict=True))


@pytest.fixture(scope="session")
def rootfs(layouts: dict[str, Path]) -> dict[str, Path]:
    """Each image unpacked (kept beside the cache and reused while the image is the same)."""
    out = {}
    for name, layout in layouts.items():
        out[name] = layout.with_name(layout.name + ".rootfs")
        run.prepare(layout, out[name])
    return out


def _lock(name: str) -> dict[str, str]:
    pins = re.findall(
        r"^([A-Za-z0-9_.-]+)==([^\s;]+)", (ROOT / "requirements" / f"{name}.lock").read_text(), re.M
    )
    return {_canonical(n): v for n, v in pins}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed_dists(root: Path) -> dict[str, str]:
    site = next((root / "app" / ".venv" / "lib").glob("python3*/site-packages"))
    out = {}
    for meta in site.glob("*.dist-info/METADATA"):
        fields = dict(re.findall(r"^(Name|Version): (.+)$", meta.read_text(errors="replace"), re.M))
        out[_canonical(fields["Name"])] = fields["Version"]
    return out


def _dpkg_installed(root: Path) -> set[str]:
    status = (root / "var" / "lib" / "dpkg" / "status").read_text()
    return {
        m.group(1)
        for block in status.split("\n\n")
        if (m := re.search(r"^Package: (\S+)", block, re.M)) and "Status: install ok installed" in block
    }


@pytest.mark.parametrize("name", NAMES)
def test_every_apt_install_reads_the_one_package_list(name: str) -> None:
    stages = dockerfile.parse((ROOT / f"Dockerfile.{name}").read_text())
    # The worker's console stage (Node.js, npm) hands the image only its built static files.
    console = [s for s in stages if s.name == "console"]
    if console:
        copied = [
            i.args
            for s in stages
            for i in s.instructions
            if i.kind == "COPY" and ("from", "console") in i.flags
        ]
        assert copied == [("/console", "./worker/resonance_worker/console_assets")]
    for stage in stages:
        if stage.name == "console":
            continue
        runs = [i for i in stage.instructions if i.kind == "RUN" and "apt-get" in i.args[0]]
        assert [r.args[0] for r in runs] == [APT_RUN], stage.name
        copy = stage.instructions[stage.instructions.index(runs[0]) - 1]
        assert copy.args == ("images/debian.packages", "/tmp/debian.packages")


@pytest.mark.parametrize("name", NAMES)
def test_the_image_holds_the_debian_packages_of_the_list(name: str, rootfs: dict[str, Path]) -> None:
    wanted = {
        line.strip()
        for line in (ROOT / "images" / "debian.packages").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    installed = _dpkg_installed(rootfs[name])
    assert wanted <= installed
    # The build stage's tools never reach the image.
    assert not (rootfs[name] / "usr" / "local" / "bin" / "uv").exists()
    assert not (rootfs[name] / "src").exists()


@pytest.mark.parametrize("name", NAMES)
def test_the_python_environment_is_exactly_the_lock_and_the_project(
    name: str, rootfs: dict[str, Path]
) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    expected = _lock(name) | {_canonical(project["name"]): project["version"]}
    assert _installed_dists(rootfs[name]) == expected


@pytest.mark.parametrize("name", NAMES)
def test_the_layout_config_is_the_dockerfiles(name: str, layouts: dict[str, Path]) -> None:
    stages = dockerfile.parse((ROOT / f"Dockerfile.{name}").read_text())
    expected = stages[-1].config()
    image = oci.read_layout(layouts[name], "dev")
    config = image.config["config"]
    assert config["Env"] == expected.env_list()
    assert config["User"] == expected.user
    assert config["Entrypoint"] == expected.entrypoint
    assert sorted(config["ExposedPorts"]) == sorted(expected.exposed_ports)
    # One layer per filesystem instruction of the final stage, on top of the base.
    filesystem = [i for i in stages[-1].instructions if not i.is_metadata]
    assert len(image.layers) == 1 + len(filesystem)


@pytest.fixture
def worker_image(
    layouts: dict[str, Path], rootfs: dict[str, Path]
) -> Iterator[tuple[int, run.subprocess.Popen[bytes]]]:
    port = free_port()
    env = {"RESONANCE_HOST": "127.0.0.1", "RESONANCE_PORT": str(port), "RESONANCE_LOG_JSON": "true"}
    process = run.start(layouts["worker"], rootfs["worker"], env=env, read_only=True)
    try:
        yield port, process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_worker_image_serves_health_as_its_user_on_a_read_only_root(
    worker_image: tuple[int, run.subprocess.Popen[bytes]],
) -> None:
    port, process = worker_image
    pid = run.entry_pid(process)
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                assert response.status == 200
                break
        except OSError:
            assert process.poll() is None, f"the worker image exited with {process.returncode}"
            assert time.monotonic() < deadline, "no /health within 60 s"
            time.sleep(0.2)
    status = Path(f"/proc/{pid}/status").read_text()
    assert re.search(r"^Uid:\s+10001\s+10001", status, re.M), status
    assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[1] == b"/app/.venv/bin/resonance-worker"
    os.kill(pid, signal.SIGTERM)
    assert process.wait(timeout=60) == 0


@pytest.mark.parametrize("name", NAMES)
def test_the_root_is_read_only_and_the_user_is_10001(
    name: str, layouts: dict[str, Path], rootfs: dict[str, Path]
) -> None:
    process = run.start(
        layouts[name],
        rootfs[name],
        entrypoint=[
            "/bin/sh",
            "-c",
            "id -u; id -g; touch /app/x 2>/dev/null && echo writable || echo read-only;"
            " touch /tmp/x && echo tmp-writable",
        ],
        read_only=True,
        tmpfs=("/tmp",),
        stdout=run.subprocess.PIPE,
    )
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0
    assert out.decode().split() == ["10001", "10001", "read-only", "tmp-writable"]


@pytest.mark.parametrize("name", NAMES)
def test_each_image_entry_point_prints_its_version_as_10001(
    name: str, layouts: dict[str, Path], rootfs: dict[str, Path]
) -> None:
    """The image's own entry point, arguments replacing CMD, on a read-only root with no settings."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    process = run.start(
        layouts[name], rootfs[name], args=["--version"], read_only=True, stdout=run.subprocess.PIPE
    )
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0
    assert out.decode().strip() == f"resonance-{name} {project['version']}"
