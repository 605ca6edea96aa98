"""Autoscaling on connections per pod through KEDA, on the real control plane: KEDA's own ScaledObject CRD
(from KEDA's Go module, ``e2e/cluster/build-binaries keda-crd``) makes the API server validate the
operator's ScaledObject against KEDA's real schema. Without the CRD the operator keeps its CPU HPA and says
the connections target needs KEDA (condition and Warning Event); once the CRD is served it applies the
ScaledObject and leaves the HPA to KEDA (not pruned, not rewritten). KEDA's operator itself is not run
here (it would create KEDA's HPA from the ScaledObject and query Prometheus): that part is KEDA's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.kube import KubectlError, apply, kubectl, kubectl_json, wait_until
from e2e.operator.conftest import RunningOperator, condition, get_cluster, resonance_cluster
from tests.harness.prometheus import BIN

CRD_FILE = BIN / "keda.sh_scaledobjects.yaml"
CRD_NAME = "scaledobjects.keda.sh"
TARGET = 1500


def cluster(name: str) -> dict[str, Any]:
    autoscaling = {"enabled": True, "minReplicas": 2, "maxReplicas": 6, "targetConnectionsPerPod": TARGET}
    return resonance_cluster(name, {"worker": {"image": "resonance-worker:e2e", "autoscaling": autoscaling}})


@pytest.fixture
def keda_crd_file() -> Path:
    if not CRD_FILE.exists():
        pytest.fail("no KEDA ScaledObject CRD: run `make binaries` (e2e/cluster/build-binaries keda-crd)")
    return CRD_FILE


def install_crd(operator: RunningOperator, path: Path) -> None:
    kubectl("apply", "--server-side", "-f", str(path))
    kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    operator.runtime.kube.forget_discovery()


@pytest.fixture
def without_keda(operator: RunningOperator, keda_crd_file: Path) -> Iterator[Path]:
    """A cluster without KEDA now; the test installs the CRD; removed afterwards so later tests see none."""
    kubectl("delete", "crd", CRD_NAME, "--ignore-not-found", "--wait=true")
    operator.runtime.kube.forget_discovery()
    try:
        yield keda_crd_file
    finally:
        kubectl("delete", "crd", CRD_NAME, "--ignore-not-found", "--wait=true", check=False)
        operator.runtime.kube.forget_discovery()


def autoscaling_reason(name: str, namespace: str) -> str | None:
    body = get_cluster(name, namespace)
    current = body.get("status", {}).get("observedGeneration") == body["metadata"]["generation"]
    return condition(body, "Autoscaling").get("reason") if current else None


def test_the_connections_target_needs_keda_then_acts_through_its_scaled_object(
    operator: RunningOperator, namespace: str, without_keda: Path
) -> None:
    name = "keda"
    apply(cluster(name), namespace=namespace)
    # No KEDA: the CPU HPA, a False condition naming the field, one Warning Event.
    wait_until(
        lambda: autoscaling_reason(name, namespace) == "KEDANotServed", timeout=60, what="KEDANotServed"
    )
    body = get_cluster(name, namespace)
    message = condition(body, "Autoscaling")["message"]
    assert condition(body, "Autoscaling")["status"] == "False"
    assert "targetConnectionsPerPod" in message and "install KEDA" in message
    hpa = kubectl_json("get", "hpa", f"{name}-worker", "-n", namespace)
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    events = kubectl_json(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}"
    )["items"]
    assert [e["type"] for e in events if e["reason"] == "KEDANotServed"] == ["Warning"]

    # KEDA's real CRD served: the operator's ScaledObject passes the API server's validation against it.
    install_crd(operator, without_keda)
    wait_until(lambda: autoscaling_reason(name, namespace) == "ScaledByKEDA", timeout=60, what="ScaledByKEDA")
    scaled = wait_until(
        lambda: kubectl_json("get", "scaledobject", f"{name}-worker", "-n", namespace),
        timeout=30,
        what="the ScaledObject",
    )
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == f"{name}-worker"
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (2, 6)
    assert spec["advanced"]["horizontalPodAutoscalerConfig"]["name"] == f"{name}-worker"
    prometheus = next(t for t in spec["triggers"] if t["type"] == "prometheus")
    assert prometheus["metricType"] == "AverageValue"
    assert prometheus["metadata"]["threshold"] == str(TARGET)
    assert f'namespace="{namespace}"' in prometheus["metadata"]["query"]
    assert scaled["metadata"]["annotations"]["scaledobject.keda.sh/transfer-hpa-ownership"] == "true"
    assert condition(get_cluster(name, namespace), "Degraded")["status"] == "False"
    # The HPA made before KEDA is left for KEDA to take over: not pruned, and no longer applied (a change
    # KEDA would make is not undone by the operator's next pass).
    kubectl(
        "patch", "hpa", f"{name}-worker", "-n", namespace, "--type=merge", "-p", '{"spec":{"maxReplicas":9}}'
    )
    passes = operator.reconciles()
    wait_until(lambda: operator.reconciles() >= passes + 2, timeout=30, what="two more passes")
    assert kubectl_json("get", "hpa", f"{name}-worker", "-n", namespace)["spec"]["maxReplicas"] == 9

    # The schema is KEDA's own and enforced: a ScaledObject without triggers is refused.
    broken = {key: value for key, value in scaled.items() if key in ("apiVersion", "kind")}
    broken["metadata"] = {"name": "broken"}
    broken["spec"] = {"scaleTargetRef": spec["scaleTargetRef"]}
    with pytest.raises(KubectlError, match="triggers"):
        kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(broken))

    # Autoscaling off: the ScaledObject is pruned and the condition goes away.
    patch = {"spec": {"worker": {"autoscaling": {"enabled": False}}}}
    kubectl("patch", "resonancecluster", name, "-n", namespace, "--type=merge", "-p", json.dumps(patch))
    wait_until(
        lambda: not kubectl("get", "scaledobject", "-n", namespace, "-o", "name").strip(),
        timeout=60,
        what="the ScaledObject pruned",
    )
