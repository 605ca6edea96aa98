"""Operator e2e fixtures: the chart installed by ``helm``, and the operator run
as a local process (a thread of this test process, so coverage sees it) with
the chart's ServiceAccount token — proving the chart's RBAC is enough."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from resonance_operator.handlers.cluster import Runtime
from resonance_operator.handlers.run import build_runtime, serve
from resonance_operator.settings import OperatorSettings

from e2e.kube import kubectl, kubectl_json, tool, wait_until
from tests.harness.processes import free_port

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "resonance-operator"
CRD_NAME = "resonanceclusters.resonance.liminal.dev"
RESYNC_SECONDS = 3.0
PEERING = "resonance-operator"
MAIN_PRIORITY = 100


def helm(*args: str) -> str:
    return subprocess.run(
        [tool("helm"), *args], check=True, capture_output=True, text=True, timeout=300
    ).stdout


class RunningOperator:
    """The operator in a background thread with its own event loop."""

    def __init__(self, settings: OperatorSettings) -> None:
        self.runtime: Runtime = build_runtime(settings)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="resonance-operator", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            asyncio.run(serve(self.runtime, stop_flag=self._stop, ready_flag=self._ready))
        except BaseException as exc:  # surfaced by the tests through .error
            self.error = exc

    def start(self) -> RunningOperator:
        self._thread.start()
        if not self._ready.wait(60):
            raise RuntimeError(f"operator did not start: {self.error}")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    @property
    def writes(self) -> int:
        return self.runtime.kube.writes

    @property
    def reads(self) -> int:
        return self.runtime.kube.reads

    def writes_in(self, namespace: str) -> int:
        return self.runtime.kube.writes_in(namespace)

    def reads_in(self, namespace: str) -> int:
        return self.runtime.kube.reads_in(namespace)

    def reconciles(self) -> float:
        return sum(
            sample.value
            for metric in self.runtime.metrics.registry.collect()
            if metric.name == "resonance_operator_reconciles"
            for sample in metric.samples
            if sample.name.endswith("_total")
        )


def reconciles_by_trigger(running: RunningOperator) -> dict[str, float]:
    """``resonance_operator_reconciles_total`` of ``running``, by trigger."""
    counts: dict[str, float] = {}
    for metric in running.runtime.metrics.registry.collect():
        if metric.name == "resonance_operator_reconciles":
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    counts[sample.labels["trigger"]] = sample.value
    return counts


@pytest.fixture(scope="session")
def release(kubeconfig: str) -> Iterator[dict[str, str]]:
    """``helm upgrade --install`` the chart, CRD included.

    The chart keeps its CRD on uninstall, so a later run adopts it (same release name and
    namespace). A CRD some other release or tool owns is only brought up to date from crds/.
    """
    namespace, name = "resonance-e2e", "resonance-operator"
    existing = kubectl("get", "crd", CRD_NAME, "--ignore-not-found", "-o", "json")
    annotations = json.loads(existing)["metadata"].get("annotations", {}) if existing else {}
    ours = not existing or (
        annotations.get("meta.helm.sh/release-name") == name
        and annotations.get("meta.helm.sh/release-namespace") == namespace
    )
    args = ["--set", f"peering.enabled=true,peering.name={PEERING}"]
    args += [] if ours else ["--set", "crds.create=false"]
    if not ours:
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    helm(
        "upgrade", "--install", name, str(CHART), "--namespace", namespace, "--create-namespace",
        "--wait", "--timeout", "120s", *args,
    )  # fmt: skip
    kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    try:
        yield {"namespace": namespace, "name": name, "serviceAccount": name}
    finally:
        helm("uninstall", name, "--namespace", namespace, "--wait")


@pytest.fixture(scope="session")
def operator_kubeconfig(
    release: dict[str, str], kubeconfig: str, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """A kubeconfig whose only credential is a token of the chart's ServiceAccount."""
    token = kubectl(
        "create", "token", release["serviceAccount"], "-n", release["namespace"], "--duration=2h"
    ).strip()
    admin = yaml.safe_load(Path(kubeconfig).read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])["context"]
    cluster = next(c for c in admin["clusters"] if c["name"] == context["cluster"])
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": "resonance-operator", "user": {"token": token}}],
        "contexts": [
            {"name": "operator", "context": {"cluster": cluster["name"], "user": "resonance-operator"}}
        ],
        "current-context": "operator",
    }
    cluster_data = cluster["cluster"]
    if (
        "certificate-authority" in cluster_data
        and not Path(cluster_data["certificate-authority"]).is_absolute()
    ):
        ca = (Path(kubeconfig).parent / cluster_data["certificate-authority"]).resolve()
        cluster_data["certificate-authority-data"] = base64.b64encode(ca.read_bytes()).decode()
        del cluster_data["certificate-authority"]
    path = tmp_path_factory.mktemp("operator") / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return str(path)


def operator_settings(
    kubeconfig: str, *, priority: int, instance: str, metrics_port: int = 0
) -> OperatorSettings:
    return OperatorSettings(
        kubeconfig=kubeconfig,
        resync_seconds=RESYNC_SECONDS,
        peering=PEERING,
        priority=priority,
        metrics_port=metrics_port,
        health_port=free_port(),
        instance=instance,
    )


@pytest.fixture(scope="session")
def operator(operator_kubeconfig: str) -> Iterator[RunningOperator]:
    """The operator every test uses: a peer of the chart's peering object with priority 100."""
    metrics_port = free_port()
    settings = operator_settings(
        operator_kubeconfig, priority=MAIN_PRIORITY, instance="e2e-local", metrics_port=metrics_port
    )
    from prometheus_client import start_http_server

    running = RunningOperator(settings)
    server, _ = start_http_server(metrics_port, addr="127.0.0.1", registry=running.runtime.metrics.registry)
    running.start()
    running.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"  # type: ignore[attr-defined]
    try:
        yield running
    finally:
        # Namespaces of the tests are deleted without waiting; let the operator finish their
        # ResonanceClusters (kopf's finalizer) before it goes, or they would hang in Terminating.
        wait_until(_nothing_terminating, timeout=120, what="ResonanceClusters being deleted to go")
        running.stop()
        server.shutdown()


def _nothing_terminating() -> bool:
    items = kubectl_json("get", "resonanceclusters", "--all-namespaces")["items"]
    return not any(item["metadata"].get("deletionTimestamp") for item in items)


def resonance_cluster(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """A ResonanceCluster manifest: the one envelope every test wraps its spec in."""
    return {
        "apiVersion": "resonance.liminal.dev/v1alpha1",
        "kind": "ResonanceCluster",
        "metadata": {"name": name},
        "spec": spec,
    }


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def get_cluster(name: str, namespace: str) -> dict[str, Any]:
    body: dict[str, Any] = kubectl_json("get", "resonancecluster", name, "-n", namespace)
    return body


def condition(body: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in body.get("status", {}).get("conditions", []) if c["type"] == type_), {})


def is_ready(name: str, namespace: str) -> dict[str, Any] | None:
    body = get_cluster(name, namespace)
    ready = condition(body, "Ready").get("status") == "True"
    current = body.get("status", {}).get("observedGeneration") == body["metadata"]["generation"]
    return body if ready and current else None


def wait_ready(name: str, namespace: str, timeout: float = 120) -> dict[str, Any]:
    body: dict[str, Any] = wait_until(
        lambda: is_ready(name, namespace), timeout=timeout, what=f"{name} Ready"
    )
    return body
