"""Canary and blue-green rollouts on the real control plane (issue 7)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from e2e.kube import apply, kubectl, kubectl_json, wait_until
from e2e.operator.conftest import RunningOperator, condition, get_cluster, wait_ready

pytestmark = pytest.mark.k8s

REVISION_LABEL = "resonance.liminal.dev/revision"


def cluster_manifest(
    name: str, rollout: dict[str, Any], *, replicas: int = 2, **worker: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "resonance.liminal.dev/v1alpha1",
        "kind": "ResonanceCluster",
        "metadata": {"name": name},
        "spec": {
            "worker": {"image": "ghcr.io/liminal/resonance-worker:0.1.0", "replicas": replicas, **worker},
            "redis": {"managed": {"persistence": {"enabled": False}}},
            "rollout": rollout,
        },
    }


def patch_spec(name: str, namespace: str, patch: dict[str, Any]) -> None:
    kubectl(
        "patch", "resonancecluster", name, "-n", namespace, "--type=merge", "-p", json.dumps({"spec": patch})
    )


def annotate(name: str, namespace: str, action: str) -> None:
    kubectl(
        "annotate", "resonancecluster", name, "-n", namespace,
        f"resonance.liminal.dev/rollout-action={action}", "--overwrite",
    )  # fmt: skip


def rollout_status(name: str, namespace: str) -> dict[str, Any]:
    status: dict[str, Any] = get_cluster(name, namespace).get("status", {}).get("rollout", {})
    return status


def revision_deployments(name: str, namespace: str) -> dict[str, dict[str, Any]]:
    items = kubectl_json(
        "get", "deployments", "-n", namespace, "-l", f"resonance.liminal.dev/cluster={name},{REVISION_LABEL}"
    )["items"]
    return {item["metadata"]["labels"][REVISION_LABEL]: item for item in items}


def events(name: str, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl_json(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}"
    )["items"]
    return items


def test_canary_steps_without_analysis_promote_and_drain_by_deadline(
    operator: RunningOperator, namespace: str
) -> None:
    rollout = {
        "strategy": "canary",
        "canary": {"steps": [{"setWeight": 50}, {"pause": {"durationSeconds": 2}}, {"pause": {}}]},
        "drain": {"maxDrainSeconds": 3},
    }
    apply(cluster_manifest("steps", rollout), namespace=namespace)
    body = wait_ready("steps", namespace)
    first = body["status"]["rollout"]
    stable = first["stableRevision"]
    assert set(revision_deployments("steps", namespace)) == {stable}

    patch_spec("steps", namespace, {"worker": {"settings": {"logLevel": "DEBUG"}}})

    def paused() -> dict[str, Any] | None:
        status = rollout_status("steps", namespace)
        return status if status.get("phase") == "RolloutPaused" and status.get("currentStep") == 2 else None

    status = wait_until(paused, timeout=60, what="canary paused at step 3")
    canary = status["updateRevision"]
    assert (
        canary != stable
        and status["canaryWeight"] == 50
        and status["weights"] == {"stable": 50, "canary": 50}
    )
    deployments = revision_deployments("steps", namespace)
    assert {r: d["spec"]["replicas"] for r, d in deployments.items()} == {stable: 1, canary: 1}
    service = kubectl_json("get", "service", "steps-worker", "-n", namespace)
    assert REVISION_LABEL not in service["spec"]["selector"]  # replica ratio: both revisions behind it
    body = get_cluster("steps", namespace)
    progressing = condition(body, "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("True", "RolloutPaused")
    assert progressing["observedGeneration"] == body["metadata"]["generation"]

    annotate("steps", namespace, "promote")

    def completed() -> dict[str, Any] | None:
        body = get_cluster("steps", namespace)
        status = body["status"]["rollout"]
        done = status.get("phase") == "RolloutCompleted" and status.get("stableRevision") == canary
        return body if done and not status.get("drainingRevision") else None

    body = wait_until(completed, timeout=60, what="promoted and drained")
    assert "resonance.liminal.dev/rollout-action" not in body["metadata"].get("annotations", {})
    assert set(revision_deployments("steps", namespace)) == {canary}
    reasons = {e["reason"] for e in events("steps", namespace)}
    assert {"RolloutStarted", "RolloutPromoted"} <= reasons
    wait_ready("steps", namespace)
