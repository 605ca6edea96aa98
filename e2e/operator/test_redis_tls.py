"""Redis TLS from the CR on the real control plane: a ResonanceCluster naming a TLS Secret that does not
exist yet is ``Degraded``/``InvalidSpec`` naming it and gets no children; once the Secret (what
cert-manager writes: ``kubernetes.io/tls`` with ``tls.crt``, ``tls.key``, ``ca.crt``) exists, the Redis
StatefulSet (Redis and Sentinel on TLS alone), the workers' settings and their CA volume are as specified.

kwok runs no containers: what the start script does is proven in tests/operator/desired/test_redis_tls.py
(run against Debian's redis-server) and the worker side in tests/worker/test_redis_tls.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from e2e.kube import apply, kubectl, kubectl_json, wait_until
from e2e.operator.conftest import RunningOperator, condition, get_cluster, resonance_cluster, wait_ready
from tests.harness.tls import make_tls

pytestmark = pytest.mark.k8s

NAME = "sealed"
SECRET = f"{NAME}-redis-tls"


def _cluster() -> dict[str, Any]:
    managed = {
        "replicas": 3,
        "persistence": {"enabled": False},
        "sentinel": {"enabled": True},
        "password": {"generate": True},
        "tls": {"secretName": SECRET},
    }
    worker = {"image": "ghcr.io/liminal/resonance-worker:0.1.0", "replicas": 1}
    return resonance_cluster(NAME, {"worker": worker, "redis": {"managed": managed}})


def test_managed_redis_tls_from_a_cr(operator: RunningOperator, namespace: str, tmp_path: Path) -> None:
    apply(_cluster(), namespace=namespace)
    body = wait_until(
        lambda: (
            (b := get_cluster(NAME, namespace)) and condition(b, "Degraded").get("status") == "True" and b
        ),
        timeout=60,
        what="Degraded",
    )
    degraded = condition(body, "Degraded")
    assert degraded["reason"] == "InvalidSpec"
    assert f"spec.redis.managed.tls.secretName: Secret '{SECRET}' not found" in degraded["message"]
    assert kubectl("get", "statefulsets", "-n", namespace, "-o", "name") == ""  # nothing touched

    files = make_tls(tmp_path / "tls")
    kubectl(
        "create", "secret", "generic", SECRET, "-n", namespace, "--type=kubernetes.io/tls",
        f"--from-file=tls.crt={files.cert}", f"--from-file=tls.key={files.key}",
        f"--from-file=ca.crt={files.ca}",
    )  # fmt: skip
    body = wait_ready(NAME, namespace, timeout=180)
    assert condition(body, "Degraded")["status"] == "False"

    redis = kubectl_json("get", "statefulset", f"{NAME}-redis", "-n", namespace)["spec"]["template"]["spec"]
    server, sentinel = redis["containers"]
    assert (
        "--port 0 --tls-port 6379" in server["command"][2] and "--tls-replication yes" in server["command"][2]
    )
    assert "tls-port 26379" in sentinel["command"][2]
    volume = next(v for v in redis["volumes"] if v["name"] == "redis-tls")
    assert volume["secret"]["secretName"] == SECRET

    settings = kubectl_json("get", "configmap", f"{NAME}-worker-settings", "-n", namespace)["data"]
    assert settings["RESONANCE_REDIS_URL"].startswith(f"rediss://{NAME}-redis.{namespace}.svc:6379")
    assert settings["RESONANCE_REDIS_TLS"] == "true"
    assert settings["RESONANCE_REDIS_TLS_CA_FILE"] == "/etc/resonance/redis-tls/ca.crt"
    worker = kubectl_json("get", "deployment", f"{NAME}-worker", "-n", namespace)["spec"]["template"]["spec"]
    ca = next(v for v in worker["volumes"] if v["name"] == "redis-tls")
    assert ca["projected"]["sources"] == [
        {"secret": {"name": SECRET, "items": [{"key": "ca.crt", "path": "ca.crt"}]}}
    ]
    mounts = worker["containers"][0]["volumeMounts"]
    assert {"name": "redis-tls", "mountPath": "/etc/resonance/redis-tls", "readOnly": True} in mounts
