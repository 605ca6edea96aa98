"""Canary and blue-green rollouts on the real control plane (issue 7)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from resonance_operator.settings import OperatorSettings
from resonance_worker.tokens import mint_connection_token

from e2e.kube import apply, kubectl, kubectl_json, wait_until
from e2e.operator.conftest import (
    PEERING,
    REPO,
    RESYNC_SECONDS,
    RunningOperator,
    condition,
    free_port,
    get_cluster,
    operator_settings,
    reconciles_by_trigger,
    resonance_cluster,
    wait_ready,
)
from e2e.operator.rollout_load import ServiceLoad
from e2e.podrunner import LoopbackKubelet

pytestmark = pytest.mark.k8s

REVISION_LABEL = "resonance.liminal.dev/revision"


def cluster_manifest(
    name: str, rollout: dict[str, Any], *, replicas: int = 2, **worker: Any
) -> dict[str, Any]:
    return resonance_cluster(
        name,
        {
            "worker": {
                "image": "ghcr.io/liminal/resonance-worker:0.1.0",
                "replicas": replicas,
                "limits": WORKER_LIMITS,
                **worker,
            },
            "redis": {"managed": {"persistence": {"enabled": False}}},
            "rollout": rollout,
        },
    )


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


def test_canary_example_is_accepted_whole_and_ready(operator: RunningOperator, namespace: str) -> None:
    example = yaml.safe_load((REPO / "examples" / "canary.yaml").read_text())
    apply(example, namespace=namespace)
    body = wait_ready("canary", namespace)
    # The API server kept the typed analysis (nothing pruned) and the printer columns read the rollout.
    defaults = {"metricsPath": "/metrics", "rolling": {"maxSurge": "25%", "maxUnavailable": 0}}
    assert body["spec"]["rollout"] == example["spec"]["rollout"] | defaults
    assert rollout_of(body)["phase"] == "RolloutCompleted" and rollout_of(body)["strategy"] == "canary"
    printed = kubectl("get", "rescl", "canary", "-n", namespace, "-o", "wide")
    assert "STEP" in printed and "WEIGHT" in printed


def test_rollout_actions_by_annotation(operator: RunningOperator, namespace: str) -> None:
    rollout = {
        "strategy": "canary",
        "canary": {"steps": [{"setWeight": 50}, {"pause": {}}]},
        "drain": {"maxDrainSeconds": 2},
    }
    apply(cluster_manifest("acts", rollout), namespace=namespace)
    stable = rollout_of(wait_ready("acts", namespace))["stableRevision"]
    annotate("acts", namespace, "sideways")  # not an action: a Warning Event, and the annotation goes

    def warned(body: dict[str, Any]) -> bool:
        annotations = body["metadata"].get("annotations") or {}
        invalid = [e for e in events("acts", namespace) if e["reason"] == "InvalidRolloutAction"]
        return "resonance.liminal.dev/rollout-action" not in annotations and bool(invalid)

    wait_status("acts", namespace, warned, "invalid action refused")
    patch_spec("acts", namespace, {"worker": {"settings": {"logLevel": "DEBUG"}}})

    def paused(body: dict[str, Any]) -> bool:
        return rollout_of(body).get("phase") == "RolloutPaused"

    canary = rollout_of(wait_status("acts", namespace, paused, "paused until promoted"))["updateRevision"]
    annotate("acts", namespace, "abort")

    def aborted(body: dict[str, Any]) -> bool:
        degraded = condition(body, "Degraded")
        return degraded.get("reason") == "RolloutAborted" and not rollout_of(body).get("drainingRevision")

    body = wait_status("acts", namespace, aborted, "aborted and drained")
    assert condition(body, "Progressing")["reason"] == "RolledBack"
    assert set(revision_deployments("acts", namespace)) == {stable}
    annotate("acts", namespace, "retry")

    def retried(body: dict[str, Any]) -> bool:
        status = rollout_of(body)
        return status.get("phase") == "RolloutPaused" and condition(body, "Degraded").get("status") == "False"

    body = wait_status("acts", namespace, retried, "retried up to the pause")
    assert rollout_of(body)["updateRevision"] == canary
    annotate("acts", namespace, "promote-full")

    def promoted(body: dict[str, Any]) -> bool:
        status = rollout_of(body)
        return status.get("stableRevision") == canary and status.get("phase") == "RolloutCompleted"

    wait_status("acts", namespace, promoted, "promoted in full")
    reasons = {e["reason"] for e in events("acts", namespace)}
    assert {"RolloutAborted", "RolloutPromoted", "Recovered"} <= reasons


def test_another_operator_continues_a_rollout_from_its_status(
    operator: RunningOperator, operator_kubeconfig: str, namespace: str
) -> None:
    """The rollout's state is in status.rollout: a fresh operator process (no memory of it) takes over
    mid-rollout, and the frozen peer - rollout tick included - writes nothing meanwhile."""
    rollout = {
        "strategy": "canary",
        "canary": {"steps": [{"setWeight": 50}, {"pause": {}}]},
        "drain": {"maxDrainSeconds": 2},
    }
    apply(cluster_manifest("handover", rollout), namespace=namespace)
    wait_ready("handover", namespace)
    patch_spec("handover", namespace, {"worker": {"settings": {"logLevel": "DEBUG"}}})

    def paused(body: dict[str, Any]) -> bool:
        return rollout_of(body).get("phase") == "RolloutPaused"

    canary = rollout_of(wait_status("handover", namespace, paused, "paused"))["updateRevision"]
    fresh = RunningOperator(
        operator_settings(operator_kubeconfig, priority=1000, instance="e2e-fresh")
    ).start()
    try:
        time.sleep(RESYNC_SECONDS * 2)  # the main operator sees the higher peer and freezes
        frozen_writes = operator.writes_in(namespace)
        annotate("handover", namespace, "promote")

        def promoted(body: dict[str, Any]) -> bool:
            status = rollout_of(body)
            return status.get("stableRevision") == canary and status.get("phase") == "RolloutCompleted"

        wait_status("handover", namespace, promoted, "promoted by the fresh operator")
        assert fresh.writes_in(namespace) > 0
        assert operator.writes_in(namespace) == frozen_writes, "the frozen peer wrote"
    finally:
        fresh.stop()
    assert set(revision_deployments("handover", namespace)) == {canary}


STORED = "operator.resonance.liminal.dev/last-handled-configuration"


def wait_frozen(running: RunningOperator) -> None:
    """Until ``running`` (a 3 s resync) has reconciled nothing for two of its periods: frozen by a peer."""
    seen = {"count": running.reconciles(), "since": time.monotonic()}

    def quiet() -> bool:
        count = running.reconciles()
        if count != seen["count"]:
            seen.update(count=count, since=time.monotonic())
        return time.monotonic() - seen["since"] > 2 * RESYNC_SECONDS

    wait_until(quiet, timeout=30, what="the main operator frozen by the higher peer")


def test_a_rollout_action_acts_at_once_with_the_default_resync(
    operator: RunningOperator, operator_kubeconfig: str, namespace: str
) -> None:
    """The action annotation is a change kopf hands to the operator at once: a peer with the default
    30 s resync promotes a paused canary long before its next resync could have seen the annotation
    (its timers first fire when it starts; the bound ends well inside the first period)."""
    rollout = {
        "strategy": "canary",
        "canary": {"steps": [{"setWeight": 50}, {"pause": {}}, {"pause": {}}]},
        "drain": {"maxDrainSeconds": 2},
    }
    manifest = cluster_manifest("prompt", rollout)
    # What the storages left on clusters before they moved to their own prefix: removed, not in the way.
    legacy = {
        "resonance.liminal.dev/kopf-managed": "yes",
        "resonance.liminal.dev/last-handled-configuration": json.dumps({"spec": {}}),
    }
    manifest["metadata"]["annotations"] = legacy
    apply(manifest, namespace=namespace)
    wait_ready("prompt", namespace)

    def migrated(body: dict[str, Any]) -> bool:
        annotations = body["metadata"].get("annotations", {})
        return not set(legacy) & set(annotations) and STORED in annotations

    wait_status("prompt", namespace, migrated, "the legacy storage annotations removed")
    patch_spec("prompt", namespace, {"worker": {"settings": {"logLevel": "DEBUG"}}})

    def paused_at(step: int) -> Any:
        def check(body: dict[str, Any]) -> bool:
            status = rollout_of(body)
            return status.get("phase") == "RolloutPaused" and status.get("currentStep") == step

        return check

    wait_status("prompt", namespace, paused_at(1), "paused at the first pause")
    settings = OperatorSettings(
        kubeconfig=operator_kubeconfig,
        peering=PEERING,
        priority=1001,
        metrics_port=0,
        health_port=free_port(),
        instance="e2e-default-resync",
    )
    assert settings.resync_seconds == 30.0  # the default, not the e2e's 3 s
    started = time.monotonic()
    fresh = RunningOperator(settings).start()
    try:
        # In charge once it reconciles; from then on the frozen main peer writes nothing.
        wait_until(lambda: fresh.reconciles() >= 1, timeout=20, what="the fresh peer reconciling")
        wait_frozen(operator)
        frozen_writes = operator.writes_in(namespace)
        changes = reconciles_by_trigger(fresh).get("change", 0)
        bound = 8.0
        # Inside the fresh peer's first resync period: only the annotation's change can explain it.
        assert time.monotonic() - started + bound < settings.resync_seconds, "the set-up took too long"
        annotate("prompt", namespace, "promote")
        wait_status("prompt", namespace, paused_at(2), "promoted to the second pause", timeout=bound)
        assert reconciles_by_trigger(fresh).get("change", 0) > changes
        assert operator.writes_in(namespace) == frozen_writes, "the frozen peer acted"
    finally:
        fresh.stop()


def test_autoscaled_canary_splits_the_hpa_range(operator: RunningOperator, namespace: str) -> None:
    rollout = {
        "strategy": "canary",
        "canary": {"steps": [{"setWeight": 50}, {"pause": {}}]},
        "drain": {"maxDrainSeconds": 2},
    }
    autoscaling = {"enabled": True, "minReplicas": 2, "maxReplicas": 6}
    apply(cluster_manifest("scaled", rollout, autoscaling=autoscaling), namespace=namespace)
    stable = rollout_of(wait_ready("scaled", namespace))["stableRevision"]

    def hpas() -> dict[str, tuple[str, int, int]]:
        items = kubectl_json("get", "hpa", "-n", namespace)["items"]
        return {
            item["metadata"]["name"]: (
                item["spec"]["scaleTargetRef"]["name"],
                item["spec"]["minReplicas"],
                item["spec"]["maxReplicas"],
            )
            for item in items
        }

    assert hpas() == {"scaled-worker": (f"scaled-worker-{stable}", 2, 6)}
    patch_spec("scaled", namespace, {"worker": {"settings": {"logLevel": "DEBUG"}}})

    def paused(body: dict[str, Any]) -> bool:
        return rollout_of(body).get("phase") == "RolloutPaused"

    canary = rollout_of(wait_status("scaled", namespace, paused, "paused at weight 50"))["updateRevision"]
    # rollout_hpa(2, 6, 50): canary 1..3, stable the rest (1..3); both Deployments left to their HPA.
    assert hpas() == {
        "scaled-worker": (f"scaled-worker-{stable}", 1, 3),
        "scaled-worker-canary": (f"scaled-worker-{canary}", 1, 3),
    }
    annotate("scaled", namespace, "promote")

    def promoted(body: dict[str, Any]) -> bool:
        status = rollout_of(body)
        return status.get("stableRevision") == canary and status.get("phase") == "RolloutCompleted"

    wait_status("scaled", namespace, promoted, "promoted")
    assert hpas() == {"scaled-worker": (f"scaled-worker-{canary}", 2, 6)}


GATEWAY_API = "sigs.k8s.io/gateway-api@v1.2.1"
HTTPROUTE_CRD = "httproutes.gateway.networking.k8s.io"


@pytest.fixture
def httproute_crd(kubeconfig: str) -> Iterator[None]:
    """Gateway API's own HTTPRoute CRD, from its Go module (the Go module proxy, as the harness's builds)."""
    go = shutil.which("go")
    if go is None:
        pytest.skip("no go toolchain to fetch the Gateway API module")
    found = subprocess.run(
        [go, "mod", "download", "-json", GATEWAY_API], capture_output=True, text=True, timeout=300, cwd="/"
    )
    if found.returncode != 0:
        pytest.skip(f"Gateway API module not available: {found.stderr.strip()[:200]}")
    crd = (
        Path(json.loads(found.stdout)["Dir"])
        / "config/crd/standard/gateway.networking.k8s.io_httproutes.yaml"
    )
    existed = bool(kubectl("get", "crd", HTTPROUTE_CRD, "--ignore-not-found"))
    kubectl("apply", "--server-side", "-f", str(crd))

    def established() -> bool:
        conditions = kubectl_json("get", "crd", HTTPROUTE_CRD).get("status", {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    wait_until(established, timeout=60, what="HTTPRoute CRD established")
    try:
        yield
    finally:
        if not existed:
            kubectl("delete", "crd", HTTPROUTE_CRD, "--wait=false")


def test_router_weights_for_gateway_api_and_ingress_nginx(
    operator: RunningOperator, namespace: str, httproute_crd: None
) -> None:
    rollout = {
        "strategy": "canary",
        "canary": {"steps": [{"setWeight": 30}, {"pause": {}}]},
        "drain": {"maxDrainSeconds": 2},
        "gatewayRoute": {"parentRefs": [{"name": "edge", "sectionName": "wss"}], "hostnames": ["ws.example"]},
    }
    ingress = {"enabled": True, "className": "nginx", "host": "ws.example"}
    manifest = cluster_manifest("routed", rollout)
    manifest["spec"]["ingress"] = ingress
    apply(manifest, namespace=namespace)
    stable = rollout_of(wait_ready("routed", namespace))["stableRevision"]

    def backends() -> list[dict[str, Any]]:
        route = kubectl_json("get", "httproute", "routed-worker", "-n", namespace)
        refs: list[dict[str, Any]] = route["spec"]["rules"][0]["backendRefs"]
        return [{k: ref[k] for k in ("name", "weight")} for ref in refs]

    assert backends() == [{"name": "routed-worker", "weight": 100}]
    patch_spec("routed", namespace, {"worker": {"settings": {"logLevel": "DEBUG"}}})

    def paused(body: dict[str, Any]) -> bool:
        return rollout_of(body).get("phase") == "RolloutPaused"

    canary = rollout_of(wait_status("routed", namespace, paused, "paused at weight 30"))["updateRevision"]
    assert backends() == [
        {"name": "routed-worker", "weight": 70},
        {"name": "routed-worker-canary", "weight": 30},
    ]
    canary_ingress = kubectl_json("get", "ingress", "routed-canary", "-n", namespace)
    annotations = canary_ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/canary"] == "true"
    assert annotations["nginx.ingress.kubernetes.io/canary-weight"] == "30"
    path = canary_ingress["spec"]["rules"][0]["http"]["paths"][0]
    assert path["backend"]["service"]["name"] == "routed-worker-canary"
    # The routers split by weight, so the worker Service keeps to stable; the canary Service to the canary.
    selectors = {
        name: kubectl_json("get", "service", name, "-n", namespace)["spec"]["selector"][REVISION_LABEL]
        for name in ("routed-worker", "routed-worker-canary")
    }
    assert selectors == {"routed-worker": stable, "routed-worker-canary": canary}
    annotate("routed", namespace, "promote")

    def promoted(body: dict[str, Any]) -> bool:
        status = rollout_of(body)
        return status.get("stableRevision") == canary and status.get("phase") == "RolloutCompleted"

    wait_status("routed", namespace, promoted, "promoted")
    assert backends() == [{"name": "routed-worker", "weight": 100}]
    assert kubectl("get", "ingress", "routed-canary", "-n", namespace, "--ignore-not-found") == ""


# -- with real worker processes behind the Pods --------------------------------------------------------

ANALYSIS = {
    "intervalSeconds": 3,
    "consecutiveSuccesses": 2,
    "inconclusiveLimit": 2,
    "metrics": [
        {
            "kind": "errorRatio",
            "maxValue": 0.05,
            "maxRatioToStable": 2,
            "baselineFloor": 0.01,
            "minCount": 20,
        },
        {"kind": "thyroidPain", "maxRatioToStable": 1.5, "baselineFloor": 1.0, "minCount": 0},
    ],
}
DRAIN = {"maxDrainSeconds": 30, "reconnectsPerSecond": 40, "windowSeconds": 2}
# Every load client comes from 127.0.0.1 as one user: limits far above what the tests open, in
# spec.worker.limits (an `extra` setting that the limits render is refused as InvalidSpec since issue 15).
WORKER_SETTINGS: dict[str, Any] = {}
WORKER_LIMITS = {"connectionsPerAddress": 10000, "connectionsPerUser": 10000}
# A real misconfiguration: a command rate far under what clients send, so the canary answers errors (111).
TOO_TIGHT_RATE = {**WORKER_LIMITS, "commandsPerSecond": 1, "commandBurst": 1}


@pytest.fixture
def workers(namespace: str, tmp_path: Path) -> Iterator[LoopbackKubelet]:
    """Real ``resonance-worker`` processes at the namespace's worker Pod IPs (in-memory engine)."""
    with LoopbackKubelet(
        namespace,
        "app.kubernetes.io/component=worker",
        env_overrides={"RESONANCE_ENGINE": "memory", "RESONANCE_LOG_JSON": "false"},
        workdir=tmp_path,
    ) as kubelet:
        yield kubelet


def client_token(name: str, namespace: str) -> str:
    secret = kubectl_json("get", "secret", f"{name}-jwt", "-n", namespace)
    key = base64.b64decode(secret["data"]["secret"]).decode()
    return mint_connection_token(key, sub="load", now=time.time(), ttl=3600)


def wait_status(name: str, namespace: str, check: Any, what: str, timeout: float = 90) -> dict[str, Any]:
    seen: list[dict[str, Any]] = []

    def probe() -> dict[str, Any] | None:
        body = get_cluster(name, namespace)
        seen.append(body.get("status", {}).get("rollout", {}))
        return body if check(body) else None

    try:
        found: dict[str, Any] = wait_until(probe, timeout=timeout, what=what)
    except AssertionError as error:
        raise AssertionError(f"{error}; last rollout status: {seen[-1] if seen else None}") from None
    return found


def rollout_of(body: dict[str, Any]) -> dict[str, Any]:
    status: dict[str, Any] = body.get("status", {}).get("rollout", {})
    return status


def test_good_canary_passes_analysis_under_load_and_promotes(
    operator: RunningOperator, namespace: str, workers: LoopbackKubelet
) -> None:
    rollout = {
        "strategy": "canary",
        "canary": {"steps": [{"setWeight": 50}, {"analysis": ANALYSIS}, {"pause": {"durationSeconds": 1}}]},
        "drain": DRAIN,
    }
    apply(cluster_manifest("good", rollout, settings=WORKER_SETTINGS), namespace=namespace)
    stable = rollout_of(wait_ready("good", namespace))["stableRevision"]
    load = ServiceLoad(namespace, {"good-worker": 24}, client_token("good", namespace)).start()
    started = time.monotonic()
    pod_calls = operator.runtime.probe.calls.copy()
    reconciles, reads, writes = (
        operator.reconciles(),
        operator.reads_in(namespace),
        operator.writes_in(namespace),
    )
    try:
        wait_until(lambda: sum(load.replies.values()) > 100, timeout=60, what="load answered")
        patch_spec("good", namespace, {"worker": {"settings": {**WORKER_SETTINGS, "logLevel": "DEBUG"}}})

        def measuring(body: dict[str, Any]) -> bool:
            status = rollout_of(body)
            measured = int((status.get("analysis") or {}).get("measurements", 0))
            return measured >= 1 and int((status.get("connections") or {}).get("canary", 0)) > 0

        during = rollout_of(wait_status("good", namespace, measuring, "analysis measuring the canary"))
        canary = during["updateRevision"]
        assert during["canaryWeight"] == 50 and during["step"] == "2/3"
        assert during["connections"]["stable"] > 0 and during["connections"]["canary"] > 0

        def promoted(body: dict[str, Any]) -> bool:
            status = rollout_of(body)
            return status.get("stableRevision") == canary and not status.get("drainingRevision")

        body = wait_status("good", namespace, promoted, "promoted and old revision drained", timeout=120)
        passes = operator.reconciles() - reconciles
        result = {
            "clients": 24,
            "rollout_seconds": round(time.monotonic() - started, 1),
            "reconciles": passes,
            "api_reads_per_reconcile": round((operator.reads_in(namespace) - reads) / passes, 2),
            "api_writes_per_reconcile": round((operator.writes_in(namespace) - writes) / passes, 2),
            "pod_calls": dict(operator.runtime.probe.calls - pod_calls),
            "load": load.summary(),
        }
        print("good canary rollout:", json.dumps(result))
        (REPO / ".run").mkdir(exist_ok=True)
        (REPO / ".run" / "e2e-rollouts-good-canary.json").write_text(json.dumps(result, indent=2) + "\n")
    finally:
        load.stop()
    assert rollout_of(body)["phase"] == "RolloutCompleted"
    assert set(revision_deployments("good", namespace)) == {canary} and canary != stable
    assert condition(body, "Degraded")["status"] == "False"
    reasons = [e["reason"] for e in events("good", namespace)]
    assert {"RolloutStarted", "RolloutPromoted"} <= set(reasons) and "AnalysisFailed" not in reasons
    assert load.closes[3001] > 0  # the old Pods handed their clients over (drain), not cut them


def test_bad_canary_is_rolled_back_by_analysis(
    operator: RunningOperator, namespace: str, workers: LoopbackKubelet
) -> None:
    rollout = {
        "strategy": "canary",
        "canary": {"steps": [{"setWeight": 50}, {"analysis": ANALYSIS}, {"pause": {}}]},
        "drain": DRAIN,
    }
    apply(cluster_manifest("bad", rollout, settings=WORKER_SETTINGS), namespace=namespace)
    stable = rollout_of(wait_ready("bad", namespace))["stableRevision"]
    load = ServiceLoad(namespace, {"bad-worker": 24}, client_token("bad", namespace)).start()
    try:
        wait_until(lambda: sum(load.replies.values()) > 100, timeout=60, what="load answered")
        patch_spec("bad", namespace, {"worker": {"limits": TOO_TIGHT_RATE}})

        def rolled_back(body: dict[str, Any]) -> bool:
            return condition(body, "Degraded").get("reason") == "AnalysisFailed"

        body = wait_status("bad", namespace, rolled_back, "rolled back by analysis")
        status = rollout_of(body)
        canary = status["updateRevision"]
        assert status["abortReason"] == "AnalysisFailed" and status["canaryWeight"] == 0
        assert canary != stable and status["stableRevision"] == stable
        degraded, progressing = condition(body, "Degraded"), condition(body, "Progressing")
        assert (degraded["status"], progressing["status"], progressing["reason"]) == (
            "True",
            "False",
            "RolledBack",
        )
        assert degraded["observedGeneration"] == body["metadata"]["generation"]
        # The canary's error replies (111) fail the error ratio and raise its thyroid pain.
        assert "analysis failed" in degraded["message"]
        assert "errorRatio: Failed" in degraded["message"] or "thyroidPain: Failed" in degraded["message"]
        # New connections stop reaching the canary at once: the Service selects stable only.
        service = kubectl_json("get", "service", "bad-worker", "-n", namespace)
        assert service["spec"]["selector"][REVISION_LABEL] == stable

        def drained(body: dict[str, Any]) -> bool:
            return not rollout_of(body).get("drainingRevision")

        wait_status("bad", namespace, drained, "canary drained", timeout=60)
    finally:
        load.stop()
    assert set(revision_deployments("bad", namespace)) == {stable}
    warnings = [e for e in events("bad", namespace) if e["reason"] == "AnalysisFailed"]
    assert warnings and warnings[0]["type"] == "Warning"
    canary_pods = [pod for pod in load.errors if f"-{canary}-" in pod]
    assert canary_pods and load.error_share(canary_pods) > 0.5  # the canary really did answer errors


def test_blue_green_promotes_after_preview_analysis(
    operator: RunningOperator, namespace: str, workers: LoopbackKubelet
) -> None:
    rollout = {
        "strategy": "blueGreen",
        "blueGreen": {
            "autoPromotionEnabled": True,
            "scaleDownDelaySeconds": 1,
            "previewReplicas": 1,
            "prePromotionAnalysis": ANALYSIS,
        },
        "drain": DRAIN,
    }
    apply(cluster_manifest("bg", rollout, replicas=1, settings=WORKER_SETTINGS), namespace=namespace)
    stable = rollout_of(wait_ready("bg", namespace))["stableRevision"]
    services = {"bg-worker": 16, "bg-worker-preview": 16}
    load = ServiceLoad(namespace, services, client_token("bg", namespace)).start()
    try:
        wait_until(lambda: sum(load.replies.values()) > 50, timeout=60, what="load answered")
        patch_spec("bg", namespace, {"worker": {"settings": {**WORKER_SETTINGS, "logLevel": "DEBUG"}}})

        def previewing(body: dict[str, Any]) -> bool:
            status = rollout_of(body)
            return (
                status.get("step") == "analysis"
                and (status.get("analysis") or {}).get("measurements", 0) >= 1
            )

        during = rollout_of(wait_status("bg", namespace, previewing, "preview analysis measuring"))
        preview = during["updateRevision"]
        service = kubectl_json("get", "service", "bg-worker", "-n", namespace)
        assert service["spec"]["selector"][REVISION_LABEL] == stable  # not promoted yet
        preview_service = kubectl_json("get", "service", "bg-worker-preview", "-n", namespace)
        assert preview_service["spec"]["selector"][REVISION_LABEL] == preview

        def promoted(body: dict[str, Any]) -> bool:
            status = rollout_of(body)
            return status.get("stableRevision") == preview and not status.get("drainingRevision")

        body = wait_status("bg", namespace, promoted, "blue-green promoted and drained", timeout=120)
    finally:
        load.stop()
    assert rollout_of(body)["phase"] == "RolloutCompleted"
    assert set(revision_deployments("bg", namespace)) == {preview}
    service = kubectl_json("get", "service", "bg-worker", "-n", namespace)
    assert service["spec"]["selector"][REVISION_LABEL] == preview
    assert kubectl("get", "service", "bg-worker-preview", "-n", namespace, "--ignore-not-found") == ""
    assert {"RolloutStarted", "RolloutPromoted"} <= {e["reason"] for e in events("bg", namespace)}
