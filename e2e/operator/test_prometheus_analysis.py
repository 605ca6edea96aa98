"""Rollout analysis on PromQL with a real Prometheus, as Argo Rollouts and Flagger do it.

The operator makes the cluster's PodMonitor (its CRD installed here for the test); a real Prometheus
(built from the Go module proxy) gets the scrape configs the Prometheus Operator would make of that
PodMonitor (``e2e/telemetry/monitors.py``), discovers the worker Pods through the API server and
scrapes the podrunner's real workers. The canary's analysis has ``prometheus.address`` set, so every
measurement is a PromQL query per revision: a good canary is promoted by it, and a canary answering
errors under load is rolled back by it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.kube import apply, kubectl, kubectl_json, wait_until
from e2e.operator.conftest import RunningOperator, condition, wait_ready
from e2e.operator.rollout_load import ServiceLoad
from e2e.operator.test_rollouts import (
    DRAIN,
    TOO_TIGHT_RATE,
    WORKER_SETTINGS,
    client_token,
    cluster_manifest,
    events,
    patch_spec,
    revision_deployments,
    rollout_of,
    wait_status,
    workers,  # noqa: F401 (the fixture)
)
from e2e.podrunner import LoopbackKubelet
from e2e.telemetry import monitors
from tests.harness.prometheus import BIN, Prometheus

pytestmark = pytest.mark.k8s

POD_MONITOR_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "podmonitors.monitoring.coreos.com"},
    "spec": {
        "group": "monitoring.coreos.com",
        "names": {
            "kind": "PodMonitor",
            "listKind": "PodMonitorList",
            "plural": "podmonitors",
            "singular": "podmonitor",
        },
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                },
            }
        ],
    },
}


@pytest.fixture
def pod_monitor_crd(operator: RunningOperator) -> Iterator[None]:
    """The PodMonitor kind served (a stand-in CRD with the Prometheus Operator's names, schema open),
    removed afterwards so later tests see a cluster without it again."""
    kubectl("apply", "-f", "-", input=json.dumps(POD_MONITOR_CRD))
    kubectl("wait", "--for=condition=Established", "crd/podmonitors.monitoring.coreos.com", "--timeout=60s")
    operator.runtime.kube.forget_discovery()
    try:
        yield
    finally:
        kubectl("delete", "crd", "podmonitors.monitoring.coreos.com", "--wait=true", check=False)
        operator.runtime.kube.forget_discovery()


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Prometheus]:
    if not (BIN / "prometheus").exists():
        pytest.fail("no prometheus: run `make binaries`")
    running = Prometheus(tmp_path / "prometheus", []).start()
    try:
        yield running
    finally:
        running.stop()


def analysis(address: str) -> dict[str, Any]:
    return {
        "intervalSeconds": 5,
        "consecutiveSuccesses": 2,
        # The first windows after the canary starts may hold too little of it: its Pods' processes
        # starting on a loaded machine, Prometheus's discovery (updates every 5 s), two scrapes.
        "inconclusiveLimit": 12,
        "prometheus": {"address": address, "window": "10s"},
        "metrics": [
            {
                "kind": "errorRatio",
                "maxValue": 0.05,
                "maxRatioToStable": 2.0,
                "baselineFloor": 0.01,
                "minCount": 20,
            },
            # A query of one's own: the canary's Pods all scraped (a revision nobody scrapes is no evidence).
            {
                "kind": "query",
                "query": 'min(up{namespace="{{namespace}}", resonance_liminal_dev_revision="{{revision}}"})',
                "maxValue": 1,
            },
        ],
    }


def test_promql_analysis_promotes_a_good_canary_and_rolls_back_a_bad_one(
    operator: RunningOperator,
    namespace: str,
    kubeconfig: str,
    pod_monitor_crd: None,
    prometheus: Prometheus,
    workers: LoopbackKubelet,  # noqa: F811
) -> None:
    rollout = {
        "strategy": "canary",
        "canary": {
            "steps": [
                {"setWeight": 50},
                {"analysis": analysis(prometheus.url)},
                {"pause": {"durationSeconds": 1}},
            ]
        },
        "drain": DRAIN,
    }
    manifest = cluster_manifest("prom", rollout, settings=WORKER_SETTINGS)
    manifest["spec"]["observability"] = {"podMonitor": {"enabled": True, "interval": "1s"}}
    apply(manifest, namespace=namespace)
    body = wait_ready("prom", namespace)
    stable = rollout_of(body)["stableRevision"]
    assert (condition(body, "Monitoring")["status"], condition(body, "Monitoring")["reason"]) == (
        "True",
        "MonitorsCreated",
    )

    # Prometheus scrapes what the operator's PodMonitor selects, as the Prometheus Operator would make it.
    pod_monitor = kubectl_json("get", "podmonitor", "prom-worker", "-n", namespace)
    prometheus.reload(monitors.scrape_configs(pod_monitor, kubeconfig))
    prometheus.wait_for(
        f'up{{namespace="{namespace}", resonance_liminal_dev_cluster="prom"}} == 1', lambda r: len(r) == 2
    )

    load = ServiceLoad(namespace, {"prom-worker": 24}, client_token("prom", namespace)).start()
    queries_before = operator.runtime.probe.prometheus.calls["ok"]
    try:
        wait_until(lambda: sum(load.replies.values()) > 100, timeout=60, what="load answered")
        # A good canary: a settings change that breaks nothing.
        patch_spec("prom", namespace, {"worker": {"settings": {**WORKER_SETTINGS, "logLevel": "DEBUG"}}})
        during = rollout_of(
            wait_status(
                "prom",
                namespace,
                lambda b: int((rollout_of(b).get("analysis") or {}).get("measurements", 0)) >= 1,
                "PromQL analysis measuring",
            )
        )
        good = during["updateRevision"]

        def promoted(body: dict[str, Any]) -> bool:
            status = rollout_of(body)
            return status.get("stableRevision") == good and not status.get("drainingRevision")

        try:
            body = wait_status("prom", namespace, promoted, "promoted by PromQL analysis", timeout=150)
        except AssertionError as error:
            commands = f'resonance_commands_total{{namespace="{namespace}"}}'
            seen = prometheus.query(f"sum by (resonance_liminal_dev_revision) ({commands})")
            targets = [
                (t["labels"].get("pod"), t["health"], t.get("lastError")) for t in prometheus.targets()
            ]
            raise AssertionError(f"{error}; Prometheus saw commands {seen}; targets {targets}") from None
        assert condition(body, "Degraded")["status"] == "False"
        assert operator.runtime.probe.prometheus.calls["ok"] > queries_before
        # Prometheus saw the canary as its own revision while it ran.
        seen = prometheus.query(
            f'count by (resonance_liminal_dev_revision) (resonance_connections{{namespace="{namespace}"}})'
        )
        assert good in {labels["resonance_liminal_dev_revision"] for labels, _ in seen}

        # A bad canary: a command rate far under what the clients send, so it answers 111 errors.
        patch_spec(
            "prom",
            namespace,
            {"worker": {"limits": TOO_TIGHT_RATE}},
        )

        def rolled_back(body: dict[str, Any]) -> bool:
            return condition(body, "Degraded").get("reason") == "AnalysisFailed"

        body = wait_status("prom", namespace, rolled_back, "rolled back by PromQL analysis", timeout=120)
        status = rollout_of(body)
        assert status["stableRevision"] == good and status["abortReason"] == "AnalysisFailed"
        assert "errorRatio: Failed" in condition(body, "Degraded")["message"]
        wait_status(
            "prom",
            namespace,
            lambda b: not rollout_of(b).get("drainingRevision"),
            "canary drained",
            timeout=60,
        )
    finally:
        load.stop()
    assert set(revision_deployments("prom", namespace)) == {good} and good != stable
    reasons = [e["reason"] for e in events("prom", namespace)]
    assert "RolloutPromoted" in reasons and "AnalysisFailed" in reasons
    errors = prometheus.query(
        f'sum(increase(resonance_command_errors_total{{namespace="{namespace}", code="111"}}[5m]))'
    )
    assert errors and errors[0][1] > 0  # the rollback was about real error replies Prometheus recorded
    print(
        "promql analysis:",
        json.dumps(
            {
                "prometheus_queries": operator.runtime.probe.prometheus.calls["ok"] - queries_before,
                "at": time.time(),
            }
        ),
    )
