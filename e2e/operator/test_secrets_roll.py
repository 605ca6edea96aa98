"""Secrets roll the workers, and a deleted generated Secret does not come back on its own (issue 15)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from e2e.kube import apply, kubectl, kubectl_json, wait_until
from e2e.operator.conftest import RunningOperator, condition, get_cluster, wait_ready
from e2e.operator.test_spec_notices import manifest

pytestmark = pytest.mark.k8s

HASH = "resonance.liminal.dev/secrets-hash"
REGENERATE = "resonance.liminal.dev/regenerate-secrets"


def template_hash(name: str, namespace: str) -> str | None:
    deployment = kubectl_json("get", "deployment", f"{name}-worker", "-n", namespace)
    value = deployment["spec"]["template"]["metadata"].get("annotations", {}).get(HASH)
    return None if value is None else str(value)


def pods_on(name: str, namespace: str, digest: str) -> bool:
    """Every worker Pod runs with ``digest`` (the rolled template), and there are some."""
    pods = kubectl_json(
        "get",
        "pods",
        "-n",
        namespace,
        "-l",
        f"resonance.liminal.dev/cluster={name},app.kubernetes.io/component=worker",
    )["items"]
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    return bool(live) and all(p["metadata"].get("annotations", {}).get(HASH) == digest for p in live)


def jwt_value(name: str, namespace: str) -> str:
    secret = kubectl_json("get", "secret", f"{name}-jwt", "-n", namespace)
    return base64.b64decode(secret["data"]["secret"]).decode()


def test_secret_changes_roll_the_workers_and_a_deleted_one_waits_for_a_person(
    operator: RunningOperator, namespace: str
) -> None:
    apply(manifest("sealed", replicas=2), namespace=namespace)
    wait_ready("sealed", namespace)
    first = template_hash("sealed", namespace)
    assert first is not None
    wait_until(lambda: pods_on("sealed", namespace, first), timeout=60, what="pods with the first hash")
    original = jwt_value("sealed", namespace)

    # A new value in the generated JWT Secret: the workers roll onto it.
    rotated = base64.b64encode(b"rotated-by-a-person-0123456789abcdef").decode()
    kubectl("patch", "secret", "sealed-jwt", "-n", namespace, "-p", json.dumps({"data": {"secret": rotated}}))
    second = wait_until(
        lambda: (h := template_hash("sealed", namespace)) != first and h,
        timeout=30,
        what="the template's secrets hash to change",
    )
    wait_until(
        lambda: pods_on("sealed", namespace, second), timeout=90, what="pods rolled onto the new Secret"
    )

    # Deleted while the workers use it: not generated again; Degraded says why and what to do.
    kubectl("delete", "secret", "sealed-jwt", "-n", namespace)

    def degraded() -> dict[str, Any] | None:
        found = condition(get_cluster("sealed", namespace), "Degraded")
        return found if found.get("reason") == "GeneratedSecretMissing" else None

    found = wait_until(degraded, timeout=30, what="Degraded GeneratedSecretMissing")
    assert found["status"] == "True" and f"{REGENERATE}=sealed-jwt" in found["message"]
    assert not kubectl("get", "secret", "sealed-jwt", "-n", namespace, "--ignore-not-found").strip()
    assert template_hash("sealed", namespace) == second  # no roll onto a Secret that is not there
    reasons = {e["reason"] for e in kubectl_json("get", "events", "-n", namespace)["items"]}
    assert "BecameDegraded" in reasons

    # The explicit action: a new value, the workers roll onto it, the annotation goes, Degraded clears.
    kubectl("annotate", "resonancecluster", "sealed", "-n", namespace, f"{REGENERATE}=sealed-jwt")

    def regenerated() -> dict[str, Any] | None:
        body = get_cluster("sealed", namespace)
        recovered = condition(body, "Degraded").get("status") == "False"
        gone = REGENERATE not in body["metadata"].get("annotations", {})
        return body if recovered and gone else None

    wait_until(regenerated, timeout=30, what="regenerated, annotation removed, not Degraded")
    value = jwt_value("sealed", namespace)
    assert value not in {original, "rotated-by-a-person-0123456789abcdef"}
    third = template_hash("sealed", namespace)
    assert third not in {first, second, None}
    wait_until(
        lambda: pods_on("sealed", namespace, str(third)), timeout=90, what="pods on the regenerated Secret"
    )


def test_a_secret_change_is_a_new_canary_revision(operator: RunningOperator, namespace: str) -> None:
    body = manifest("sealed-canary", replicas=2)
    body["spec"]["rollout"] = {
        "strategy": "canary",
        "canary": {"steps": [{"setWeight": 50}]},
        "drain": {"maxDrainSeconds": 2},
    }
    apply(body, namespace=namespace)
    first = wait_ready("sealed-canary", namespace)["status"]["rollout"]["stableRevision"]
    rotated = base64.b64encode(b"rotated-for-the-canary-0123456789abcdef").decode()
    patch = json.dumps({"data": {"secret": rotated}})
    kubectl("patch", "secret", "sealed-canary-jwt", "-n", namespace, "-p", patch)

    def promoted() -> str | None:
        rollout = get_cluster("sealed-canary", namespace).get("status", {}).get("rollout", {})
        stable = rollout.get("stableRevision")
        done = rollout.get("phase") == "RolloutCompleted" and not rollout.get("drainingRevision")
        return str(stable) if done and stable != first else None

    second = wait_until(promoted, timeout=90, what="the rotated Secret promoted as a new revision")
    deployment = kubectl_json("get", "deployment", f"sealed-canary-worker-{second}", "-n", namespace)
    assert HASH in deployment["spec"]["template"]["metadata"]["annotations"]
