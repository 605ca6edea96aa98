"""The operator image (built without Docker by ``make images``) runs as it would in its Pod: its own
entry point as UID 10001, read-only root with a tmpfs /tmp, the chart's ServiceAccount token and CA
mounted where Kubernetes mounts them, KUBERNETES_SERVICE_HOST/PORT set: it reaches the API server,
serves /healthz and /metrics, and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from e2e.kube import kubectl, tool, wait_until
from tests.harness.processes import free_port

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "resonance-operator"
CRD = "resonanceclusters.resonance.liminal.dev"
SERVICE_ACCOUNT_DIR = "/run/secrets/kubernetes.io/serviceaccount"  # /var/run is a link to /run

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("mmdebstrap") is None,
    reason="the daemonless build needs root and mmdebstrap (`make deps` installs it)",
)


@pytest.fixture
def service_account(kubeconfig: str, namespace: str, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """The chart installed into ``namespace`` (watching only it), and a directory like a Pod's
    service-account volume: token, ca.crt, namespace. Returns it and the API server URL."""
    if not kubectl("get", "crd", CRD, "--ignore-not-found", "-o", "name").strip():
        kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    helm = tool("helm")
    subprocess.run(
        [helm, "install", "smoke", str(CHART), "--namespace", namespace,
         "--set", f"watch.namespace={namespace}", "--set", "crds.create=false"],
        check=True, capture_output=True,
    )  # fmt: skip
    token = kubectl("create", "token", "smoke-resonance-operator", "-n", namespace, "--duration=1h").strip()
    admin = yaml.safe_load(Path(kubeconfig).read_text())
    cluster = admin["clusters"][0]["cluster"]
    volume = tmp_path / "serviceaccount"
    volume.mkdir()
    (volume / "token").write_text(token)
    (volume / "namespace").write_text(namespace)
    ca = cluster.get("certificate-authority")
    if ca:
        shutil.copy((Path(kubeconfig).parent / ca).resolve(), volume / "ca.crt")
    else:
        import base64

        (volume / "ca.crt").write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    for path in volume.iterdir():
        path.chmod(0o644)
    volume.chmod(0o755)
    tmp_path.chmod(0o755)
    try:
        yield volume, cluster["server"]
    finally:
        subprocess.run(
            [helm, "uninstall", "smoke", "--namespace", namespace], check=False, capture_output=True
        )


def test_operator_image_runs_in_cluster_as_its_user(
    service_account: tuple[Path, str], namespace: str
) -> None:
    from images import build, run

    layout = build.build(["operator"])[0]
    volume, server = service_account
    api = urlparse(server)
    health, metrics = free_port(), free_port()
    process = run.start(
        layout,
        layout.with_name(layout.name + ".rootfs"),
        env={
            "KUBERNETES_SERVICE_HOST": api.hostname or "",
            "KUBERNETES_SERVICE_PORT": str(api.port),
            "RESONANCE_OPERATOR_NAMESPACE": namespace,
            "RESONANCE_OPERATOR_HEALTH_PORT": str(health),
            "RESONANCE_OPERATOR_METRICS_PORT": str(metrics),
            "RESONANCE_OPERATOR_INSTANCE": "image-smoke",
        },
        read_only=True,
        tmpfs=("/tmp", "/run"),
        binds={volume: SERVICE_ACCOUNT_DIR},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        pid = run.entry_pid(process)

        def healthy() -> bool:
            assert process.poll() is None, process.communicate()[0]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{health}/healthz", timeout=2) as response:
                    return bool(response.status == 200)
            except OSError:
                return False

        wait_until(healthy, timeout=90, what="the operator image's /healthz")
        status = Path(f"/proc/{pid}/status").read_text()
        assert re.search(r"^Uid:\s+10001\s+10001", status, re.M), status
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5) as response:
            assert b"resonance_operator_reconciles_total" in response.read()
        os.kill(pid, signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output
    assert b"Signal SIGTERM is received" in output
