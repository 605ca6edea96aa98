"""The operator on a real control plane: installed by Helm, run with the chart's
ServiceAccount token, reconciling ResonanceClusters into children that the real
controller-manager, scheduler and kwok nodes act on."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from resonance_operator.api.spec import parse
from resonance_operator.errors import ConflictError
from resonance_operator.kube import children as kube_children
from resonance_operator.kube import credentials as kube_credentials
from resonance_operator.kube.client import KubeClient
from resonance_operator.kube.status import StatusWrite, write_status

from e2e.kube import KubectlError, apply, kubectl, kubectl_json, wait_until
from e2e.operator.conftest import (
    PEERING,
    REPO,
    RESYNC_SECONDS,
    RunningOperator,
    condition,
    free_port,
    get_cluster,
    is_ready,
    operator_settings,
    resonance_cluster,
    scrape,
    wait_ready,
)
from tests.harness.processes import die_with_parent

pytestmark = pytest.mark.k8s

# Drift is repaired by the resync timer: allow a few periods plus API latency.
REPAIR_TIMEOUT = RESYNC_SECONDS * 4 + 20


def example(name: str) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load((REPO / "examples" / f"{name}.yaml").read_text())
    return body


def children_of(namespace: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for kind in (
        "configmap",
        "secret",
        "service",
        "deployment",
        "statefulset",
        "networkpolicy",
        "pdb",
        "ingress",
        "hpa",
    ):
        items = kubectl_json(
            "get", kind, "-n", namespace, "-l", "app.kubernetes.io/managed-by=resonance-operator"
        )["items"]
        found[kind] = sorted(item["metadata"]["name"] for item in items)
    return found


def worker_pods(namespace: str, cluster: str) -> list[dict[str, Any]]:
    selector = f"resonance.liminal.dev/cluster={cluster},app.kubernetes.io/component=worker"
    pods: list[dict[str, Any]] = kubectl_json("get", "pods", "-n", namespace, "-l", selector)["items"]
    return pods


def pod_ready(pod: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", [])
    )


def test_chart_installs_crd_and_rbac(release: dict[str, str]) -> None:
    crd = kubectl_json("get", "crd", "resonanceclusters.resonance.liminal.dev")
    assert crd["spec"]["names"]["shortNames"] == ["rescl"]
    sa = f"system:serviceaccount:{release['namespace']}:{release['serviceAccount']}"

    def can(*args: str) -> str:
        return kubectl("auth", "can-i", *args, "--as", sa, check=False).strip()

    assert can("patch", "deployments", "-n", "anywhere") == "yes"
    assert can("patch", "resonanceclusters.resonance.liminal.dev/status", "-n", "anywhere") == "yes"
    # No wider than needed: no secret listing, pods only read (rollouts), no namespaces, no RBAC escalation.
    assert can("list", "secrets", "-n", "anywhere") == "no"
    assert can("list", "pods", "-n", "anywhere") == "yes"
    assert can("delete", "pods", "-n", "anywhere") == "no"
    assert can("watch", "pods", "-n", "anywhere") == "no"
    assert can("delete", "namespaces") == "no"
    assert can("create", "clusterroles") == "no"
    assert can("list", "configmaps", "-n", "anywhere") == "no"


def test_minimal_example_becomes_ready_on_kwok_nodes(operator: RunningOperator, namespace: str) -> None:
    apply(example("minimal"), namespace=namespace)
    body = wait_ready("minimal", namespace)
    assert body["status"]["observedGeneration"] == body["metadata"]["generation"]
    assert body["status"]["workers"] == "2/2"
    assert {c["type"]: c["status"] for c in body["status"]["conditions"]} == {
        "Ready": "True",
        "Progressing": "False",
        "Degraded": "False",
        "Monitoring": "True",  # nothing requested (spec.observability): NotRequested
    }
    assert body["status"]["endpoint"] == f"ws://minimal-worker.{namespace}.svc:80/connection/websocket"
    assert children_of(namespace) == {
        "configmap": ["minimal-features", "minimal-worker-settings"],
        "secret": ["minimal-jwt"],
        "service": ["minimal-redis", "minimal-worker"],
        "deployment": ["minimal-worker"],
        "statefulset": ["minimal-redis"],
        "networkpolicy": ["minimal-datastores"],
        "pdb": ["minimal-worker"],
        "ingress": [],
        "hpa": [],
    }
    pods = worker_pods(namespace, "minimal")
    assert len(pods) == 2 and all(pod_ready(p) for p in pods)
    assert all(p["spec"]["nodeName"].startswith("kwok-node-") for p in pods)
    deployment = kubectl_json("get", "deployment", "minimal-worker", "-n", namespace, "--show-managed-fields")
    owner = deployment["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == (
        "ResonanceCluster",
        "minimal",
        body["metadata"]["uid"],
    )
    managers = {m["manager"] for m in deployment["metadata"]["managedFields"] if m["operation"] == "Apply"}
    assert managers == {"resonance-operator"}
    events = kubectl_json(
        "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=minimal"
    )["items"]
    assert {"ChildCreated", "BecameReady"} <= {e["reason"] for e in events}
    printed = kubectl("get", "rescl", "minimal", "-n", namespace)
    assert "READY" in printed and "True" in printed and "2/2" in printed


def test_full_example_becomes_ready(operator: RunningOperator, namespace: str) -> None:
    apply(example("full"), namespace=namespace)
    body = wait_ready("full", namespace, timeout=180)
    assert body["status"]["components"]["neo4j"] == {"mode": "managed", "ready": True}
    assert body["status"]["endpoint"] == "wss://realtime.example.com/connection/websocket"
    found = children_of(namespace)
    assert found["statefulset"] == ["full-neo4j", "full-redis"]
    assert found["ingress"] == ["full"]
    assert found["secret"] == ["full-jwt", "full-neo4j-auth"]
    ingress = kubectl_json("get", "ingress", "full", "-n", namespace)
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600"
    # No Prometheus Operator CRDs in this cluster: nothing fails, and the status and an Event say so.
    assert condition(body, "Degraded")["status"] == "False"
    monitoring = condition(body, "Monitoring")
    assert (monitoring["status"], monitoring["reason"]) == ("False", "MonitoringCRDMissing")
    events = kubectl_json("get", "events", "-n", namespace, "--field-selector", "involvedObject.name=full")[
        "items"
    ]
    warnings = [e for e in events if e["reason"] == "MonitoringCRDMissing"]
    assert [e["type"] for e in warnings] == ["Warning"] and "PodMonitor" in warnings[0]["message"]
    printed = kubectl("get", "rescl", "full", "-n", namespace)
    assert "DEGRADED" in printed.splitlines()[0]  # a default column now


def test_scale_and_spec_edit_roll_through(operator: RunningOperator, namespace: str) -> None:
    apply(example("minimal"), namespace=namespace)
    wait_ready("minimal", namespace)
    kubectl("scale", "resonancecluster/minimal", "--replicas=5", "-n", namespace)
    body = wait_until(
        lambda: (b := is_ready("minimal", namespace)) and b["status"]["workers"] == "5/5" and b,
        timeout=120,
        what="5 workers Ready",
    )
    assert body["spec"]["worker"]["replicas"] == 5
    assert len([p for p in worker_pods(namespace, "minimal") if pod_ready(p)]) == 5
    scale = kubectl_json("get", "--subresource=scale", "resonancecluster", "minimal", "-n", namespace)
    assert (scale["spec"]["replicas"], scale["status"]["replicas"]) == (5, 5)
    assert scale["status"]["selector"] == body["status"]["selector"]

    before = kubectl_json("get", "deployment", "minimal-worker", "-n", namespace)
    old_hash = before["spec"]["template"]["metadata"]["annotations"]["resonance.liminal.dev/config-hash"]
    generation = body["metadata"]["generation"]
    kubectl(
        "patch", "rescl", "minimal", "-n", namespace, "--type=merge",
        "-p", '{"spec":{"worker":{"settings":{"logLevel":"DEBUG"}}}}',
    )  # fmt: skip
    # Ready stays True while serving workers roll (issue 17): the rollout's end is Progressing False.
    wait_until(
        lambda: (
            (b := is_ready("minimal", namespace))
            and b["status"]["observedGeneration"] == generation + 1
            and condition(b, "Progressing")["status"] == "False"
        ),
        timeout=120,
        what="the edited spec rolled out",
    )
    after = kubectl_json("get", "deployment", "minimal-worker", "-n", namespace)
    new_hash = after["spec"]["template"]["metadata"]["annotations"]["resonance.liminal.dev/config-hash"]
    assert new_hash != old_hash
    settings = kubectl_json("get", "configmap", "minimal-worker-settings", "-n", namespace)
    assert settings["data"]["RESONANCE_LOG_LEVEL"] == "DEBUG"
    assert after["status"]["updatedReplicas"] == 5
    template_hashes = {
        p["metadata"]["labels"]["pod-template-hash"] for p in worker_pods(namespace, "minimal")
    }
    assert len(template_hashes) == 1, "every pod runs the new template"


def test_deleted_and_edited_children_are_repaired(operator: RunningOperator, namespace: str) -> None:
    apply(example("minimal"), namespace=namespace)
    wait_ready("minimal", namespace)
    for kind, name in (
        ("deployment", "minimal-worker"),
        ("service", "minimal-worker"),
        ("configmap", "minimal-worker-settings"),
    ):
        uid = kubectl_json("get", kind, name, "-n", namespace)["metadata"]["uid"]
        kubectl("delete", kind, name, "-n", namespace)

        def recreated(kind: str = kind, name: str = name, uid: str = uid) -> bool:
            return bool(kubectl_json("get", kind, name, "-n", namespace)["metadata"]["uid"] != uid)

        wait_until(
            recreated,
            timeout=REPAIR_TIMEOUT,
            what=f"{kind}/{name} recreated",
        )
    kubectl("scale", "deployment/minimal-worker", "--replicas=1", "-n", namespace)
    wait_until(
        lambda: kubectl_json("get", "deployment", "minimal-worker", "-n", namespace)["spec"]["replicas"] == 2,
        timeout=REPAIR_TIMEOUT,
        what="the hand-scaled Deployment back at 2",
    )
    kubectl(
        "patch",
        "configmap",
        "minimal-worker-settings",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"data":{"RESONANCE_LOG_LEVEL":"ERROR"}}',
    )
    wait_until(
        lambda: (
            kubectl_json("get", "configmap", "minimal-worker-settings", "-n", namespace)["data"][
                "RESONANCE_LOG_LEVEL"
            ]
            == "INFO"
        ),
        timeout=REPAIR_TIMEOUT,
        what="the hand-edited ConfigMap repaired",
    )
    wait_ready("minimal", namespace)


def test_children_follow_spec_toggles(operator: RunningOperator, namespace: str) -> None:
    apply(example("minimal"), namespace=namespace)
    wait_ready("minimal", namespace)
    kubectl(
        "patch", "rescl", "minimal", "-n", namespace, "--type=merge", "-p",
        json.dumps({"spec": {
            "neo4j": {"managed": {"persistence": {"enabled": False}}},
            "ingress": {"enabled": True, "host": "rt.example.test"},
            "podDisruptionBudget": {"enabled": False},
        }}),
    )  # fmt: skip
    body = wait_until(
        lambda: (b := is_ready("minimal", namespace)) and b["status"]["components"]["neo4j"]["ready"] and b,
        timeout=120,
        what="Neo4j managed and ready",
    )
    assert body["status"]["endpoint"] == "ws://rt.example.test/connection/websocket"
    found = children_of(namespace)
    assert found["statefulset"] == ["minimal-neo4j", "minimal-redis"]
    assert found["ingress"] == ["minimal"] and found["pdb"] == []
    assert "minimal-neo4j-auth" in found["secret"]
    policy = kubectl_json("get", "networkpolicy", "minimal-datastores", "-n", namespace)
    assert policy["spec"]["podSelector"]["matchExpressions"][0]["values"] == ["redis", "neo4j"]

    kubectl(
        "patch", "rescl", "minimal", "-n", namespace, "--type=json", "-p",
        json.dumps([
            {"op": "remove", "path": "/spec/neo4j/managed"},
            {"op": "replace", "path": "/spec/ingress/enabled", "value": False},
            {"op": "replace", "path": "/spec/podDisruptionBudget/enabled", "value": True},
        ]),
    )  # fmt: skip
    wait_until(
        lambda: (
            (f := children_of(namespace))["statefulset"] == ["minimal-redis"]
            and f["ingress"] == []
            and f["pdb"] == ["minimal-worker"]
        ),
        timeout=REPAIR_TIMEOUT,
        what="children the spec no longer wants pruned",
    )
    # The generated password stays (owned by the cluster, so it goes with it), ready for a re-enable.
    assert "minimal-neo4j-auth" in children_of(namespace)["secret"]
    body = wait_ready("minimal", namespace)
    assert body["status"]["components"]["neo4j"] == {"mode": "disabled", "ready": False}
    events = kubectl_json(
        "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=minimal"
    )["items"]
    assert "ChildDeleted" in {e["reason"] for e in events}


def test_no_op_reconciles_make_zero_writes(operator: RunningOperator, namespace: str) -> None:
    apply(example("minimal"), namespace=namespace)
    wait_ready("minimal", namespace)
    # Let the workload status settle (the last pod-ready status write), then watch a quiet period.
    time.sleep(RESYNC_SECONDS * 2)
    # Counted in this test's namespace: other tests' namespaces may still be terminating.
    writes, reads, reconciles = (
        operator.writes_in(namespace),
        operator.reads_in(namespace),
        operator.reconciles(),
    )
    time.sleep(RESYNC_SECONDS * 3 + 1)
    assert operator.reconciles() >= reconciles + 3, "the resync timer did run"
    assert operator.reads_in(namespace) - reads >= 3 * 13  # every possible child looked at, once per resync
    assert operator.writes_in(namespace) == writes, dict(operator.runtime.kube.calls_by_namespace)
    text = scrape(operator.metrics_url)  # type: ignore[attr-defined]
    assert 'resonance_operator_kube_requests_total{code="200",verb="get"}' in text
    assert "resonance_operator_reconcile_duration_seconds_bucket" in text


def test_a_status_from_a_stale_read_is_refused_and_rendered_again(
    operator: RunningOperator, operator_kubeconfig: str, namespace: str
) -> None:
    """The API server honours the resourceVersion in a status merge patch (409 when the object moved
    on), and write_status then renders against the cluster as it is now, with the chart's RBAC."""
    apply(example("minimal"), namespace=namespace)
    stale = wait_ready("minimal", namespace)
    kubectl("annotate", "resonancecluster", "minimal", "-n", namespace, "e2e.resonance.liminal.dev/touched=1")
    fresh = get_cluster("minimal", namespace)
    assert fresh["metadata"]["resourceVersion"] != stale["metadata"]["resourceVersion"]
    workers = stale["status"]["workers"]

    async def write_over_the_stale_read() -> tuple[int, StatusWrite]:
        kube = KubeClient(kube_credentials.load(operator_kubeconfig))
        try:
            path = kube_children.cluster_path(namespace, "minimal")
            with pytest.raises(ConflictError):
                await kube.patch_status(
                    path, {"workers": "stale"}, resource_version=stale["metadata"]["resourceVersion"]
                )
            done = await write_status(kube, parse(stale), lambda previous: {**previous, "workers": "9/9"})
            return kube.calls["patch_status"], done
        finally:
            await kube.close()

    patches, done = asyncio.run(write_over_the_stale_read())
    # Refused by hand, refused inside write_status, then written over a fresh read (the operator's own
    # reaction to the annotation may move the object on once more in between).
    assert done.written and patches >= 3
    assert done.previous["workers"] == workers and done.status["workers"] == "9/9"
    # The operator puts the truth back on its next resync.
    wait_until(
        lambda: get_cluster("minimal", namespace)["status"]["workers"] == workers,
        timeout=REPAIR_TIMEOUT,
        what="the status repaired",
    )


def test_schema_and_cel_refuse_bad_specs(operator: RunningOperator, namespace: str) -> None:
    def refused(spec: dict[str, Any], name: str = "bad") -> str:
        with pytest.raises(KubectlError) as caught:
            apply(resonance_cluster(name, spec), namespace=namespace)
        return caught.value.stderr

    worker = {"image": "registry.example/w:1"}
    assert "spec.worker.replicas" in refused({"worker": {**worker, "replicas": -1}})
    assert "Unsupported value" in refused({"worker": {**worker, "imagePullPolicy": "Sometimes"}})
    assert "redis needs exactly one of managed or external" in refused(
        {"worker": worker, "redis": {"managed": {}, "external": {"url": "redis://r:6379"}}}
    )
    assert "neo4j cannot be both managed and external" in refused(
        {
            "worker": worker,
            "neo4j": {"managed": {}, "external": {"uri": "bolt://g", "passwordSecretRef": {"name": "g"}}},
        }
    )
    assert "auth takes jwtSecretRef or jwksUrl, not both" in refused(
        {"worker": worker, "auth": {"jwtSecretRef": {"name": "s"}, "jwksUrl": "https://idp/jwks"}}
    )
    assert "autoscaling.minReplicas must not exceed maxReplicas" in refused(
        {"worker": {**worker, "autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}}
    )
    assert "ingress.host is required" in refused({"worker": worker, "ingress": {"enabled": True}})
    below_target = refused(
        {
            "worker": {
                **worker,
                "autoscaling": {"targetConnectionsPerPod": 2000},
                "limits": {"connectionsPerPod": 1000},
            }
        }
    )
    assert "spec.worker.limits.connectionsPerPod must be at least" in below_target
    assert "spec.worker.autoscaling.targetConnectionsPerPod" in below_target
    apply(example("minimal"), namespace=namespace)
    with pytest.raises(KubectlError, match="immutable"):
        kubectl(
            "patch",
            "rescl",
            "minimal",
            "-n",
            namespace,
            "--type=merge",
            "-p",
            '{"spec":{"redis":{"managed":{"persistence":{"enabled":true}}}}}',
        )


def test_semantic_errors_are_reported_degraded_and_touch_nothing(
    operator: RunningOperator, namespace: str
) -> None:
    manifest = example("minimal")
    manifest["metadata"]["name"] = "needs-secret"
    manifest["spec"]["auth"] = {"jwtSecretRef": {"name": "missing-jwt"}}
    manifest["spec"]["worker"]["resources"] = {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}
    apply(manifest, namespace=namespace)
    body = wait_until(
        lambda: (
            (b := get_cluster("needs-secret", namespace))
            and condition(b, "Degraded").get("status") == "True"
            and b
        ),
        timeout=60,
        what="Degraded",
    )
    degraded = condition(body, "Degraded")
    assert degraded["reason"] == "InvalidSpec"
    assert "Secret 'missing-jwt' not found" in degraded["message"]
    assert "cpu request 2 exceeds its limit 1" in degraded["message"]
    assert body["status"]["observedGeneration"] == body["metadata"]["generation"]
    assert all(names == [] for names in children_of(namespace).values())
    events = kubectl_json(
        "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=needs-secret"
    )["items"]
    assert "BecameDegraded" in {e["reason"] for e in events}
    # Fixing the spec and creating the Secret recovers without a hand on the operator.
    kubectl("create", "secret", "generic", "missing-jwt", "--from-literal=secret=s3cret", "-n", namespace)
    kubectl(
        "patch",
        "rescl",
        "needs-secret",
        "-n",
        namespace,
        "--type=json",
        "-p",
        '[{"op":"remove","path":"/spec/worker/resources"}]',
    )
    body = wait_ready("needs-secret", namespace)
    assert condition(body, "Degraded")["status"] == "False"
    env = kubectl_json("get", "deployment", "needs-secret-worker", "-n", namespace)["spec"]["template"][
        "spec"
    ]["containers"][0]["env"]
    assert {
        "name": "RESONANCE_JWT_SECRET",
        "valueFrom": {"secretKeyRef": {"name": "missing-jwt", "key": "secret"}},
    } in env


def test_deletion_removes_every_child(operator: RunningOperator, namespace: str) -> None:
    apply(example("minimal"), namespace=namespace)
    wait_ready("minimal", namespace)
    kubectl("delete", "rescl", "minimal", "-n", namespace, "--wait=true", "--timeout=60s")
    wait_until(
        lambda: (
            all(names == [] for names in children_of(namespace).values())
            and not worker_pods(namespace, "minimal")
        ),
        timeout=90,
        what="garbage collection of every child",
    )


def test_fifty_clusters_reconcile_to_ready(operator: RunningOperator, namespace: str, tmp_path: Path) -> None:
    count = 50
    manifests = []
    for index in range(count):
        manifest = example("minimal")
        manifest["metadata"]["name"] = f"c{index:02d}"
        manifest["spec"]["worker"]["replicas"] = 1
        manifests.append(manifest)
    reconciles, reads, writes = operator.reconciles(), operator.reads, operator.writes
    started = time.monotonic()
    kubectl("apply", "-n", namespace, "-f", "-", input="\n---\n".join(json.dumps(m) for m in manifests))

    def all_ready() -> bool:
        items = kubectl_json("get", "resonanceclusters", "-n", namespace)["items"]
        return len(items) == count and all(
            condition(b, "Ready").get("status") == "True"
            and b["status"]["observedGeneration"] == b["metadata"]["generation"]
            for b in items
        )

    wait_until(all_ready, timeout=600, what=f"{count} clusters Ready", interval=1.0)
    elapsed = time.monotonic() - started
    done_reconciles = operator.reconciles() - reconciles
    result = {
        "clusters": count,
        "seconds_to_all_ready": round(elapsed, 1),
        "reconciles": int(done_reconciles),
        "api_reads": operator.reads - reads,
        "api_writes": operator.writes - writes,
        "api_calls_per_reconcile": round(
            (operator.reads - reads + operator.writes - writes) / max(done_reconciles, 1), 1
        ),
        "writes_per_cluster": round((operator.writes - writes) / count, 1),
    }
    print(f"\nfifty-clusters: {json.dumps(result)}")
    (REPO / ".run").mkdir(exist_ok=True)
    (REPO / ".run" / "e2e-operator-fifty-clusters.json").write_text(json.dumps(result, indent=2) + "\n")
    assert result["writes_per_cluster"] < 20


def test_console_script_serves_health_and_metrics_and_stops_on_sigterm(
    operator: RunningOperator, operator_kubeconfig: str
) -> None:
    """The real entry point, as a separate process, with the chart's ServiceAccount token.

    It joins the peering with the lowest priority, so it stays frozen and does not compete.
    """
    metrics_port, health_port = free_port(), free_port()
    env = {
        **os.environ,
        "RESONANCE_OPERATOR_KUBECONFIG": operator_kubeconfig,
        "RESONANCE_OPERATOR_PEERING": PEERING,
        "RESONANCE_OPERATOR_PRIORITY": "1",
        "RESONANCE_OPERATOR_METRICS_PORT": str(metrics_port),
        "RESONANCE_OPERATOR_HEALTH_PORT": str(health_port),
    }
    script = Path(sys.executable).parent / "resonance-operator"
    process = subprocess.Popen(
        [str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=die_with_parent(),
    )  # fmt: skip
    try:
        assert _served(health_port)
        assert "resonance_operator_reconciles" in scrape(f"http://127.0.0.1:{metrics_port}/metrics")
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert "Signal SIGTERM is received" in output


def _served(port: int, timeout: float = 60) -> bool:
    def answered() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    wait_until(answered, timeout=timeout, what=f"http://127.0.0.1:{port}/healthz")
    return True


def test_peering_lets_exactly_one_operator_act(
    operator: RunningOperator, operator_kubeconfig: str, namespace: str
) -> None:
    """Peers with lower priority stay frozen; a higher one takes over; when it leaves, the next resumes."""
    low = RunningOperator(operator_settings(operator_kubeconfig, priority=10, instance="e2e-low")).start()
    try:
        apply(example("minimal"), namespace=namespace)
        wait_ready("minimal", namespace)
        assert (low.writes, low.reconciles()) == (0, 0)

        high = RunningOperator(
            operator_settings(operator_kubeconfig, priority=1000, instance="e2e-high")
        ).start()
        try:
            time.sleep(RESYNC_SECONDS * 2)  # the others see the new peer and freeze
            main_writes = operator.writes_in(namespace)
            second = example("minimal")
            second["metadata"]["name"] = "second"
            apply(second, namespace=namespace)
            wait_ready("second", namespace)
            assert high.writes_in(namespace) > 0
            assert operator.writes_in(namespace) == main_writes, "the frozen peer wrote"
            assert low.writes == 0
        finally:
            high.stop()
        third = example("minimal")
        third["metadata"]["name"] = "third"
        apply(third, namespace=namespace)
        wait_ready("third", namespace, timeout=120)  # the main operator resumed
        assert operator.writes_in(namespace) > main_writes
        assert low.writes == 0
    finally:
        low.stop()
