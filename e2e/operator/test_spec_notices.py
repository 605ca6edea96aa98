"""Spec edits the operator acts on differently than written get an Event (issue 15): ``kubectl scale``
while the HPA owns the replica count, and autoscaling without a CPU request (the default one is given)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from resonance_operator.desired import sizing

from e2e.kube import apply, kubectl, kubectl_json, wait_until
from e2e.operator.conftest import RunningOperator, get_cluster, resonance_cluster, wait_ready

pytestmark = pytest.mark.k8s

WORKER_LIMITS = {"connectionsPerAddress": 10000, "connectionsPerUser": 10000}


def manifest(name: str, **worker: Any) -> dict[str, Any]:
    return resonance_cluster(
        name,
        {
            "worker": {"image": "ghcr.io/liminal/resonance-worker:0.1.0", "limits": WORKER_LIMITS, **worker},
            "redis": {"managed": {"persistence": {"enabled": False}}},
        },
    )


def events(name: str, namespace: str, reason: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl_json(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name},reason={reason}"
    )["items"]
    return items


def worker_container(name: str, namespace: str) -> dict[str, Any]:
    deployment = kubectl_json("get", "deployment", f"{name}-worker", "-n", namespace)
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def test_kubectl_scale_under_an_hpa_and_a_missing_cpu_request_get_events(
    operator: RunningOperator, namespace: str
) -> None:
    autoscaling = {"enabled": True, "minReplicas": 2, "maxReplicas": 4}
    apply(manifest("noticed", autoscaling=autoscaling), namespace=namespace)
    wait_ready("noticed", namespace)
    # No CPU in spec.worker.resources: the workers get the default request, and an Event says so.
    requests = worker_container("noticed", namespace)["resources"]["requests"]
    assert (requests["cpu"], requests["memory"]) == (sizing.DEFAULT_CPU_REQUEST, sizing.DEFAULT_MEMORY)
    defaulted = wait_until(
        lambda: events("noticed", namespace, "DefaultCPURequest"), timeout=30, what="DefaultCPURequest"
    )
    message = defaulted[0]["message"]
    assert sizing.DEFAULT_CPU_REQUEST in message and "70% CPU target" in message

    kubectl("scale", "resonancecluster", "noticed", "-n", namespace, "--replicas=7")
    warned = wait_until(
        lambda: events("noticed", namespace, "ReplicasOwnedByAutoscaler"),
        timeout=30,
        what="ReplicasOwnedByAutoscaler",
    )
    assert warned[0]["type"] == "Warning"
    assert "spec.worker.replicas=7 is ignored" in warned[0]["message"]
    body = get_cluster("noticed", namespace)
    assert body["spec"]["worker"]["replicas"] == 7  # the scale subresource wrote it
    assert body["status"]["observedGeneration"] == body["metadata"]["generation"]
    deployment = kubectl_json("get", "deployment", "noticed-worker", "-n", namespace)
    assert deployment["spec"]["replicas"] != 7  # the HPA's count stands

    # A CPU request of one's own: used as written, no new DefaultCPURequest.
    patch = {"spec": {"worker": {"resources": {"requests": {"cpu": "500m"}}}}}
    kubectl("patch", "resonancecluster", "noticed", "-n", namespace, "--type=merge", "-p", json.dumps(patch))
    wait_until(
        lambda: worker_container("noticed", namespace)["resources"]["requests"]["cpu"] == "500m",
        timeout=30,
        what="the spec's CPU request",
    )
    assert len(events("noticed", namespace, "DefaultCPURequest")) == 1
