"""Smoke tests proving the control plane is real: CRDs, controllers, the
scheduler, kwok nodes, ServiceAccount tokens and RBAC."""

from __future__ import annotations

import base64
import ssl
import urllib.error
import urllib.request

import pytest
import yaml

from e2e.kube import KubectlError, apply, kubectl, kubectl_json, unique_name, wait_until

SMOKE_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.smoke.resonance.liminal.dev
spec:
  group: smoke.resonance.liminal.dev
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [size]
              properties:
                size: {type: integer, minimum: 1, maximum: 10}
"""


def test_crd_and_custom_object_round_trip(namespace: str) -> None:
    apply(SMOKE_CRD)
    wait_until(
        lambda: any(
            c["type"] == "Established" and c["status"] == "True"
            for c in kubectl_json("get", "crd", "gadgets.smoke.resonance.liminal.dev")["status"]["conditions"]
        ),
        timeout=60,
        what="CRD Established",
    )
    apply(
        {
            "apiVersion": "smoke.resonance.liminal.dev/v1",
            "kind": "Gadget",
            "metadata": {"name": "g1"},
            "spec": {"size": 3},
        },
        namespace=namespace,
    )
    got = kubectl_json("get", "gadget", "g1", "-n", namespace)
    assert got["spec"] == {"size": 3}
    # The schema is enforced by the real API server.
    bad = {
        "apiVersion": "smoke.resonance.liminal.dev/v1",
        "kind": "Gadget",
        "metadata": {"name": "g2"},
        "spec": {"size": 99},
    }
    with pytest.raises(KubectlError, match=r"spec\.size"):
        apply(bad, namespace=namespace)


def test_deployment_becomes_available_on_kwok_nodes(namespace: str) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "smoke"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "smoke"}},
            "template": {
                "metadata": {"labels": {"app": "smoke"}},
                "spec": {"containers": [{"name": "c", "image": "example.invalid/smoke:1"}]},
            },
        },
    }
    apply(deployment, namespace=namespace)

    def available() -> bool:
        status = kubectl_json("get", "deployment", "smoke", "-n", namespace).get("status", {})
        conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
        return status.get("readyReplicas") == 3 and conditions.get("Available") == "True"

    wait_until(available, timeout=120, what="Deployment Available with 3 ready replicas")
    pods = kubectl_json("get", "pods", "-n", namespace, "-l", "app=smoke")["items"]
    assert len(pods) == 3
    for pod in pods:
        assert pod["spec"]["nodeName"].startswith("kwok-node-")
        assert pod["status"]["phase"] == "Running"
        ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
        assert ready["Ready"] == "True"


def _api_get(kubeconfig_path: str, token: str, path: str) -> int:
    """GET ``path`` on the cluster of ``kubeconfig_path`` with a bearer token; return the HTTP status."""
    with open(kubeconfig_path) as file:
        config = yaml.safe_load(file)
    context = next(c for c in config["contexts"] if c["name"] == config["current-context"])["context"]
    cluster = next(c for c in config["clusters"] if c["name"] == context["cluster"])["cluster"]
    ctx = ssl.create_default_context(cafile=cluster.get("certificate-authority"))
    if "certificate-authority-data" in cluster:
        ctx = ssl.create_default_context(
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
        )
    request = urllib.request.Request(cluster["server"] + path, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, context=ctx, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_service_account_token_is_accepted_and_rbac_denies_the_rest(namespace: str, kubeconfig: str) -> None:
    sa = unique_name("reader")
    kubectl("create", "serviceaccount", sa, "-n", namespace)
    kubectl("create", "role", "configmap-reader", "--verb=get,list", "--resource=configmaps", "-n", namespace)
    kubectl(
        "create",
        "rolebinding",
        "configmap-reader",
        "--role=configmap-reader",
        f"--serviceaccount={namespace}:{sa}",
        "-n",
        namespace,
    )
    token = kubectl("create", "token", sa, "-n", namespace, "--duration=10m").strip()

    # What the Role allows works with the token …
    assert _api_get(kubeconfig, token, f"/api/v1/namespaces/{namespace}/configmaps") == 200
    # … everything else is forbidden (authenticated, so 403 rather than 401).
    assert _api_get(kubeconfig, token, f"/api/v1/namespaces/{namespace}/secrets") == 403
    assert _api_get(kubeconfig, token, "/api/v1/namespaces/default/configmaps") == 403
    # And a forged token is not authenticated at all.
    assert _api_get(kubeconfig, token[:-4] + "AAAA", f"/api/v1/namespaces/{namespace}/configmaps") == 401
    # kubectl agrees, through the same RBAC (SubjectAccessReview by impersonation).
    subject = f"--as=system:serviceaccount:{namespace}:{sa}"
    assert kubectl("auth", "can-i", "list", "configmaps", "-n", namespace, subject).strip() == "yes"
    assert (
        kubectl("auth", "can-i", "create", "configmaps", "-n", namespace, subject, check=False).strip()
        == "no"
    )
