"""Autoscaling on connections per pod: KEDA's ScaledObject where KEDA is served (the HPA is then KEDA's:
neither applied nor pruned), the CPU HPA and a False ``Autoscaling`` condition with a Warning where not."""

from __future__ import annotations

from typing import Any

from resonance_operator.api.observed import Observed
from resonance_operator.desired import children, keda, revisions, worker
from resonance_operator.rollout.state import RolloutState
from resonance_operator.status import compute

from tests.operator import fixtures

FRESH = children.FreshSecrets(jwt="j", neo4j_password="n")


def scaled_cluster(**autoscaling: Any) -> Any:
    return fixtures.cluster(
        fixtures.with_worker(
            autoscaling={"enabled": True, "minReplicas": 3, "maxReplicas": 12, **autoscaling}
        )
    )


def test_the_scaled_object_scales_on_connections_per_pod_and_cpu() -> None:
    cluster = scaled_cluster(targetConnectionsPerPod=2000, targetCPUUtilizationPercentage=60)
    body = keda.scaled_object(cluster)
    assert body is not None
    assert (body["apiVersion"], body["kind"], body["metadata"]["name"]) == (
        "keda.sh/v1alpha1",
        "ScaledObject",
        "demo-worker",
    )
    assert body["metadata"]["annotations"][keda.TRANSFER_HPA_OWNERSHIP] == "true"
    assert body["metadata"]["ownerReferences"][0]["kind"] == "ResonanceCluster"
    spec = body["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "demo-worker"}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (3, 12)
    hpa_config = spec["advanced"]["horizontalPodAutoscalerConfig"]
    assert hpa_config == {"name": "demo-worker", "behavior": worker.scale_down_slowly()}
    prometheus, cpu = spec["triggers"]
    assert prometheus == {
        "type": "prometheus",
        "name": "connections",
        "metricType": "AverageValue",
        "metadata": {
            "serverAddress": "http://prometheus-operated.monitoring.svc:9090",
            "query": 'sum(resonance_connections{namespace="team-a", resonance_liminal_dev_cluster="demo"})',
            "threshold": "2000",
        },
    }
    assert cpu == {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "60"}}


def test_no_scaled_object_without_a_connections_target_or_autoscaling() -> None:
    assert keda.scaled_object(scaled_cluster()) is None
    off = fixtures.cluster(fixtures.with_worker(autoscaling={"targetConnectionsPerPod": 10}))
    assert keda.scaled_object(off) is None


def test_the_prometheus_address_comes_from_the_spec() -> None:
    cluster = scaled_cluster(targetConnectionsPerPod=5, prometheusAddress="http://prom.obs:9090")
    body = keda.scaled_object(cluster)
    assert body is not None
    assert body["spec"]["triggers"][0]["metadata"]["serverAddress"] == "http://prom.obs:9090"


def keys(desired: list[children.Child]) -> set[str]:
    return {str(child.key) for child in desired}


def test_with_keda_served_the_scaled_object_replaces_the_hpa_which_is_not_observed_either() -> None:
    cluster = scaled_cluster(targetConnectionsPerPod=2000)
    with_keda = children.desired_children(cluster, service_monitor_crd=False, fresh=FRESH, keda_crd=True)
    assert "ScaledObject/demo-worker" in keys(with_keda)
    assert "HorizontalPodAutoscaler/demo-worker" not in keys(with_keda)
    possible = set(map(str, children.possible_keys(cluster, service_monitor_crd=False, keda_crd=True)))
    # KEDA's HPA keeps the name: the operator must not prune it.
    assert "HorizontalPodAutoscaler/demo-worker" not in possible
    assert "ScaledObject/demo-worker" in possible
    without = children.desired_children(cluster, service_monitor_crd=False, fresh=FRESH)
    assert "HorizontalPodAutoscaler/demo-worker" in keys(without)
    assert not any(key.startswith("ScaledObject/") for key in keys(without))
    assert not any(
        str(k).startswith("ScaledObject/") for k in children.possible_keys(cluster, service_monitor_crd=False)
    )


def test_a_cpu_only_cluster_keeps_its_hpa_and_a_served_keda_prunes_a_stale_scaled_object() -> None:
    cluster = scaled_cluster()
    desired = children.desired_children(cluster, service_monitor_crd=False, fresh=FRESH, keda_crd=True)
    assert "HorizontalPodAutoscaler/demo-worker" in keys(desired)
    assert "ScaledObject/demo-worker" not in keys(desired)
    possible = set(map(str, children.possible_keys(cluster, service_monitor_crd=False, keda_crd=True)))
    assert {"ScaledObject/demo-worker", "HorizontalPodAutoscaler/demo-worker"} <= possible


def test_during_a_canary_keda_scales_the_stable_revision_and_the_canary_keeps_its_hpa() -> None:
    cluster = fixtures.cluster(
        {
            **fixtures.with_worker(
                autoscaling={
                    "enabled": True,
                    "minReplicas": 4,
                    "maxReplicas": 8,
                    "targetConnectionsPerPod": 100,
                }
            ),
            "rollout": {"strategy": "canary", "canary": {"steps": [{"setWeight": 25}]}},
        }
    )
    state = RolloutState(stable_revision="r1", canary_revision=worker.revision(cluster), weight=25)
    live = {"r1": {"spec": {"template": {"metadata": {}, "spec": {}}, "replicas": 4}}}
    topology = revisions.plan_topology(cluster, state, live)
    desired = children.desired_children(
        cluster, service_monitor_crd=False, fresh=FRESH, keda_crd=True, topology=topology, live_revisions=live
    )
    by_key = {str(child.key): child.body for child in desired}
    scaled = by_key["ScaledObject/demo-worker"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == revisions.deployment_name(cluster, "r1")
    assert topology.hpa is not None
    assert scaled["spec"]["minReplicaCount"] == topology.hpa.stable.min_replicas
    assert "HorizontalPodAutoscaler/demo-worker" not in by_key
    assert "HorizontalPodAutoscaler/demo-worker-canary" in by_key


def autoscaling_condition(status: dict[str, Any]) -> dict[str, Any] | None:
    return next((c for c in status["conditions"] if c["type"] == "Autoscaling"), None)


def test_the_autoscaling_condition_says_the_connections_target_needs_keda() -> None:
    cluster = scaled_cluster(targetConnectionsPerPod=2000)
    without = compute.compute(cluster, Observed(children={}), now="2026-01-01T00:00:00Z")
    condition = autoscaling_condition(without)
    assert condition is not None
    assert (condition["status"], condition["reason"]) == ("False", "KEDANotServed")
    assert "targetConnectionsPerPod" in condition["message"] and "install KEDA" in condition["message"]
    events = compute.transitions({}, without)
    assert [(e.type, e.reason) for e in events if e.reason == "KEDANotServed"] == [
        ("Warning", "KEDANotServed")
    ]
    # Once posted, not again while it holds.
    assert not [e for e in compute.transitions(without, without) if e.reason == "KEDANotServed"]

    served = compute.compute(cluster, Observed(children={}), now="2026-01-01T00:00:00Z", keda_served=True)
    condition = autoscaling_condition(served)
    assert condition is not None
    assert (condition["status"], condition["reason"]) == ("True", "ScaledByKEDA")


def test_the_condition_is_cpu_only_without_a_target_and_absent_without_autoscaling() -> None:
    cpu = compute.compute(scaled_cluster(), Observed(children={}), now="2026-01-01T00:00:00Z")
    condition = autoscaling_condition(cpu)
    assert condition is not None
    assert (condition["status"], condition["reason"]) == ("True", "ScaledOnCPU")
    off = compute.compute(fixtures.cluster(), Observed(children={}), now="2026-01-01T00:00:00Z")
    assert autoscaling_condition(off) is None
