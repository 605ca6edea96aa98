"""Feature flags from the CR on the real control plane: the API server refuses a bad flag naming
it (schema and CEL), and flipping ``spec.features`` reaches connected SDK clients on
``system:features`` within 5 s while the worker processes (run by the loopback kubelet at their
Pod addresses) keep their PIDs and no Pod is replaced."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

import centrifuge
import pytest
import yaml
from resonance_operator.api.spec import parse
from resonance_operator.desired import features
from resonance_worker.tokens import mint_connection_token

from e2e.kube import KubectlError, apply, kubectl, kubectl_json, wait_until
from e2e.operator.conftest import REPO, RunningOperator, wait_ready
from e2e.podrunner import LoopbackKubelet
from tests.worker.transport.conftest import Recorder, SubRecorder

pytestmark = pytest.mark.k8s

FLIP_SECONDS = 5.0
ANNOTATION = features.VERSION_ANNOTATION


def cluster_with(name: str, features: list[dict[str, Any]]) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load((REPO / "examples" / "minimal.yaml").read_text())
    body["metadata"]["name"] = name
    body["spec"]["worker"]["replicas"] = 1
    body["spec"]["features"] = features
    return body


def refused(namespace: str, features: list[dict[str, Any]]) -> str:
    with pytest.raises(KubectlError) as caught:
        apply(cluster_with("bad-flags", features), namespace=namespace)
    return caught.value.stderr


def test_the_api_server_refuses_a_bad_flag_naming_it(operator: RunningOperator, namespace: str) -> None:
    weights = refused(
        namespace,
        [
            {"name": "ok"},
            {"name": "lobby-test", "variants": [{"name": "a", "weight": 60}, {"name": "b", "weight": 30}]},
        ],
    )
    assert "feature lobby-test: variant weights must sum to 100" in weights
    assert "feature big-rollout: rollout must be a percentage 0-100" in refused(
        namespace, [{"name": "big-rollout", "rollout": 150}]
    )
    assert "twice" in refused(
        namespace, [{"name": "twice"}, {"name": "twice", "rollout": 5}]
    )  # Duplicate value
    assert "Bad_Name" in refused(namespace, [{"name": "Bad_Name"}])
    same = [{"name": "a", "weight": 50}, {"name": "a", "weight": 50}]
    variants = refused(namespace, [{"name": "v", "variants": same}])
    assert "Duplicate value" in variants and "spec.features[0].variants" in variants


def worker_pod_uids(namespace: str) -> list[str]:
    pods = kubectl_json("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/component=worker")
    return sorted(pod["metadata"]["uid"] for pod in pods["items"])


def flags_version(name: str, namespace: str) -> str:
    """The version the operator gives the flags it rendered (desired/features.py)."""
    return features.version(parse(kubectl_json("get", "rescl", name, "-n", namespace)))


def jwt_secret(name: str, namespace: str) -> str:
    secret = kubectl_json("get", "secret", f"{name}-jwt", "-n", namespace)
    return base64.b64decode(secret["data"]["secret"]).decode()


async def test_flipping_a_flag_in_the_cr_reaches_connected_clients_without_a_restart(
    operator: RunningOperator, namespace: str, tmp_path: Path
) -> None:
    name = "flags"
    apply(cluster_with(name, [{"name": "new-lobby", "rollout": 0}]), namespace=namespace)
    wait_ready(name, namespace, timeout=180)
    pods_before = worker_pod_uids(namespace)
    async with LoopbackKubelet(
        namespace,
        "app.kubernetes.io/component=worker",
        env_overrides={"RESONANCE_ENGINE": "memory", "RESONANCE_LOG_JSON": "false"},
        env_unset=("RESONANCE_NEO4J__URI", "RESONANCE_NEO4J__USER", "RESONANCE_NEO4J__PASSWORD"),
        workdir=tmp_path / "pods",
    ) as kubelet:
        (endpoint,) = await kubelet.wait_endpoints_async(1, timeout=120)
        pid = kubelet.processes()[0].process.pid
        token = mint_connection_token(jwt_secret(name, namespace), sub="alice", now=time.time(), ttl=600)
        events = Recorder()
        client = centrifuge.Client(endpoint.ws_url, token=token, events=events, proxy=None)
        try:
            await client.connect()
            connected = await events.wait_for("connected", timeout=20)
            version = connected.data["features"]["version"]
            assert connected.data["features"]["flags"] == {"new-lobby": False}
            flags = SubRecorder()
            sub = client.new_subscription("system:features", events=flags)
            await sub.subscribe()
            await sub.ready(timeout=10)

            kubectl(
                "patch", "rescl", name, "-n", namespace, "--type=merge",
                "-p", json.dumps({"spec": {"features": [{"name": "new-lobby", "rollout": 100}]}}),
            )  # fmt: skip
            flipped = time.monotonic()

            async def changed() -> dict[str, Any]:
                while True:
                    ctx = await flags.wait_for("publication", timeout=FLIP_SECONDS)
                    if ctx.pub.data["version"] != version:
                        return dict(ctx.pub.data)

            seen = await asyncio.wait_for(changed(), FLIP_SECONDS)
            took = time.monotonic() - flipped
            assert seen["flags"] == {"new-lobby": True}, seen
            print(f"flag flip seen by the SDK client after {took:.2f} s")
        finally:
            await client.disconnect()
        (record,) = kubelet.processes()
        assert record.process.pid == pid and record.restarts == 0
    assert worker_pod_uids(namespace) == pods_before  # no rollout: the same Pods
    # The operator annotated them (metadata only), so real kubelets refresh the volume at once.
    version = flags_version(name, namespace)

    def annotated() -> bool:
        pods = kubectl_json("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/component=worker")
        return [p["metadata"].get("annotations", {}).get(ANNOTATION) for p in pods["items"]] == [version]

    wait_until(annotated, timeout=30, what="the worker Pods annotated with the flags' version")
