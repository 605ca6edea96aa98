from __future__ import annotations

from resonance_operator.api import kinds
from resonance_operator.desired import children, revisions, worker
from resonance_operator.rollout.state import RolloutState

from tests.operator import fixtures

FRESH = children.FreshSecrets(jwt="j", neo4j_password="n")


def test_minimal_cluster_children_in_dependency_order() -> None:
    desired = children.desired_children(fixtures.cluster(), service_monitor_crd=False, fresh=FRESH)
    assert [str(child.key) for child in desired] == [
        "ConfigMap/demo-worker-settings",
        "ConfigMap/demo-features",
        "Secret/demo-jwt",
        "Service/demo-redis",
        "StatefulSet/demo-redis",
        "NetworkPolicy/demo-datastores",
        "Deployment/demo-worker",
        "Service/demo-worker",
        "PodDisruptionBudget/demo-worker",
    ]
    assert [child.create_only for child in desired].count(True) == 1


def test_full_cluster_children_are_all_possible_keys() -> None:
    cluster = fixtures.cluster(
        {
            **fixtures.with_worker(autoscaling={"enabled": True}),
            "neo4j": {"managed": {}},
            "ingress": {"enabled": True, "host": "a.example"},
            "observability": {"serviceMonitor": {"enabled": True}},
            "redis": {
                "managed": {"replicas": 3, "sentinel": {"enabled": True}, "password": {"generate": True}}
            },
            "backup": {"destination": {"pvc": {"claimName": "backups"}}},
        }
    )
    desired = children.desired_children(cluster, service_monitor_crd=True, fresh=FRESH)
    possible = children.possible_keys(cluster, service_monitor_crd=True)
    rollout_only = {
        "Secret/demo-worker-api",
        "Service/demo-worker-canary",
        "Service/demo-worker-preview",
        "Ingress/demo-canary",
        "HorizontalPodAutoscaler/demo-worker-canary",
    }
    assert sorted(map(str, (c.key for c in desired))) == sorted(set(map(str, possible)) - rollout_only)
    assert rollout_only <= set(map(str, possible))
    assert len(children.possible_keys(cluster, service_monitor_crd=False)) == len(possible) - 1
    with_route = children.possible_keys(cluster, service_monitor_crd=True, gateway_crd=True)
    assert set(map(str, with_route)) - set(map(str, possible)) == {"HTTPRoute/demo-worker"}


def test_given_secrets_are_not_generated() -> None:
    cluster = fixtures.cluster(
        {
            **fixtures.with_worker(),
            "auth": {"jwtSecretRef": {"name": "s"}},
            "neo4j": {"managed": {"authSecretRef": {"name": "n"}}},
        }
    )
    kinds = [
        child.key.kind for child in children.desired_children(cluster, service_monitor_crd=False, fresh=FRESH)
    ]
    assert "Secret" not in kinds


def test_every_child_of_a_canary_is_a_possible_key_or_a_revision_deployment() -> None:
    cluster = fixtures.cluster(
        {
            **fixtures.with_worker(autoscaling={"enabled": True}),
            "ingress": {"enabled": True, "host": "a.example", "className": "nginx"},
            "rollout": {
                "strategy": "canary",
                "canary": {"steps": [{"setWeight": 30}]},
                "gatewayRoute": {"parentRefs": [{"name": "gw"}]},
            },
        }
    )
    state = RolloutState(stable_revision="r1", canary_revision=worker.revision(cluster), weight=30)
    live = {"r1": {"spec": {"template": {"metadata": {}, "spec": {}}, "replicas": 2}}}
    topology = revisions.plan_topology(cluster, state, live)
    desired = children.desired_children(
        cluster,
        service_monitor_crd=False,
        gateway_crd=True,
        fresh=FRESH,
        topology=topology,
        live_revisions=live,
    )
    possible = set(children.possible_keys(cluster, service_monitor_crd=False, gateway_crd=True))
    outside = {str(c.key) for c in desired if c.key not in possible}
    assert outside == {f"Deployment/demo-worker-{r}" for r in topology.revisions}
    assert {"HTTPRoute", "Ingress", "HorizontalPodAutoscaler"} <= {c.key.kind for c in desired}
    # Without the Gateway API served, no route is built and none is looked for.
    without = children.desired_children(
        cluster, service_monitor_crd=False, fresh=FRESH, topology=topology, live_revisions=live
    )
    assert [c for c in desired if c.key.kind != "HTTPRoute"] == without


def test_every_child_kind_is_a_registered_kind() -> None:
    for child in children.CHILDREN:
        assert child.kind in kinds.KINDS
        assert (child.kind.api_version, child.kind.kind) in kinds.PLURALS
