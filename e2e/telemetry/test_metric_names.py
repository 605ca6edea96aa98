"""Every metric an alert or a dashboard panel names is one a real worker or the real operator exposes:
both are started as processes here (the worker on its own, the operator's console script against
the control plane, watching a namespace of its own) and their ``/metrics`` scraped."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.kube import kubectl, wait_until
from tests.harness.processes import die_with_parent, free_port
from tests.harness.worker import WorkerProcess
from tests.monitoring import names

REPO = Path(__file__).resolve().parents[2]
CRD = "resonanceclusters.resonance.liminal.dev"


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


@pytest.fixture
def worker_metrics(tmp_path: Path) -> Iterator[str]:
    worker = WorkerProcess(tmp_path).start()
    try:
        yield scrape(f"{worker.base_url}/metrics")
    finally:
        worker.stop()


@pytest.fixture
def operator_metrics(kubeconfig: str, namespace: str) -> Iterator[str]:
    if not kubectl("get", "crd", CRD, "--ignore-not-found", "-o", "name").strip():
        kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    port = free_port()
    env = {
        **os.environ,
        "RESONANCE_OPERATOR_KUBECONFIG": kubeconfig,
        "RESONANCE_OPERATOR_NAMESPACE": namespace,
        "RESONANCE_OPERATOR_PEERING": "",
        "RESONANCE_OPERATOR_METRICS_PORT": str(port),
        "RESONANCE_OPERATOR_HEALTH_PORT": str(free_port()),
    }
    script = Path(sys.executable).parent / "resonance-operator"
    process = subprocess.Popen(
        [str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=die_with_parent(),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/metrics"

    def served() -> str | None:
        assert process.poll() is None, process.communicate()[0]
        try:
            return scrape(url)
        except OSError:
            return None

    try:
        yield wait_until(served, timeout=60, what=url)
    finally:
        process.terminate()
        process.communicate(timeout=60)


def test_every_metric_named_by_an_alert_or_a_panel_is_exposed(
    worker_metrics: str, operator_metrics: str
) -> None:
    worker, operator = names.exposed(worker_metrics), names.exposed(operator_metrics)
    assert "resonance_connections" in worker and "resonance_operator_reconciles_total" in operator
    exposed = worker | operator
    users = {**names.named_in_rules(), **names.named_in_dashboards()}
    missing = {where: sorted(used - exposed) for where, used in users.items() if used - exposed}
    assert missing == {}
    # Every alert and panel names at least one series (a typo'd name would otherwise pass unnoticed).
    assert all(users.values())
