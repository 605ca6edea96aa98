"""Worker children of canary and blue-green rollouts: revision Deployments, Services, traffic, HPAs."""

from __future__ import annotations

from typing import Any

from resonance_operator.api.conditions import DegradedReason
from resonance_operator.desired import meta, revisions, worker
from resonance_operator.rollout.state import RolloutState

from tests.operator import fixtures

CANARY_STEPS = {"steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}]}


def canary_cluster(replicas: int = 10, **extra: Any) -> Any:
    rollout = {"strategy": "canary", "canary": CANARY_STEPS, **extra.pop("rollout", {})}
    return fixtures.cluster({**fixtures.with_worker(replicas=replicas), "rollout": rollout, **extra})


def blue_green_cluster(**blue_green: Any) -> Any:
    return fixtures.cluster(
        {**fixtures.with_worker(replicas=3), "rollout": {"strategy": "blueGreen", "blueGreen": blue_green}}
    )


def live(replicas: int, ready: int | None = None, template: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "x", "generation": 1},
        "spec": {
            "replicas": replicas,
            "template": template
            or {"metadata": {"labels": {"a": "b"}, "creationTimestamp": None}, "spec": {}},
        },
        "status": {"readyReplicas": replicas if ready is None else ready, "observedGeneration": 1},
    }


def by_kind(bodies: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {b["metadata"]["name"]: b for b in bodies if b["kind"] == kind}


def test_no_rollout_runs_the_spec_revision_only() -> None:
    cluster = canary_cluster(replicas=4)
    rev = worker.revision(cluster)
    topology = revisions.plan_topology(cluster, RolloutState(stable_revision=rev), {})
    assert (topology.stable, topology.canary, topology.revisions) == (rev, None, [rev])
    assert topology.replicas == {rev: 4} and topology.settled
    bodies = revisions.children(cluster, topology, {})
    deployment = by_kind(bodies, "Deployment")[f"demo-worker-{rev}"]
    assert deployment["spec"]["replicas"] == 4
    assert deployment["spec"]["selector"]["matchLabels"][meta.REVISION_LABEL] == rev
    assert deployment["spec"]["template"]["metadata"]["labels"][meta.REVISION_LABEL] == rev
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "envFrom" not in container  # settings inlined: a revision carries all it runs with
    assert {"name": "RESONANCE_ENGINE", "value": "redis"} in container["env"]
    assert {
        "name": "RESONANCE_API_KEY",
        "valueFrom": {"secretKeyRef": {"name": "demo-worker-api", "key": "key"}},
    } in container["env"]
    service = by_kind(bodies, "Service")["demo-worker"]
    assert service["spec"]["selector"][meta.REVISION_LABEL] == rev


def test_revision_changes_with_the_template_not_the_replicas() -> None:
    assert worker.revision(canary_cluster(replicas=2)) == worker.revision(canary_cluster(replicas=9))
    changed = fixtures.cluster(
        {
            **fixtures.with_worker(limits={"commandsPerSecond": 1}),
            "rollout": {"strategy": "canary", "canary": CANARY_STEPS},
        }
    )
    assert worker.revision(changed) != worker.revision(canary_cluster())
    assert len(worker.revision(changed)) == worker.REVISION_LENGTH


def test_canary_splits_replicas_and_the_one_service_spreads_over_both() -> None:
    cluster = canary_cluster(replicas=10)
    new = worker.revision(cluster)
    state = RolloutState(stable_revision="old", canary_revision=new, weight=20)
    first = revisions.plan_topology(cluster, state, {"old": live(10)})
    # maxSurge 25 % (3): two canary Pods start while stable keeps 10.
    assert first.replicas == {"old": 10, new: 2} and not first.settled
    later = revisions.plan_topology(cluster, state, {"old": live(10), new: live(2)})
    assert later.replicas == {"old": 8, new: 2} and not later.settled
    done = revisions.plan_topology(cluster, state, {"old": live(8), new: live(2)})
    assert done.settled
    old_template = {"metadata": {"labels": {"v": "old"}, "creationTimestamp": None}, "spec": {"c": 1}}
    live_bodies = {"old": live(8, template=old_template), new: live(2)}
    bodies = revisions.children(cluster, done, live_bodies)
    deployments = by_kind(bodies, "Deployment")
    stable = deployments["demo-worker-old"]
    # The stable revision keeps the template it runs with (no creationTimestamp echoed back).
    assert stable["spec"]["template"] == {
        "metadata": {"labels": {"v": "old", meta.REVISION_LABEL: "old"}},
        "spec": {"c": 1},
    }
    assert stable["spec"]["replicas"] == 8 and deployments[f"demo-worker-{new}"]["spec"]["replicas"] == 2
    services = by_kind(bodies, "Service")
    assert meta.REVISION_LABEL not in services["demo-worker"]["spec"]["selector"]
    assert services["demo-worker-canary"]["spec"]["selector"][meta.REVISION_LABEL] == new
    assert "Ingress" not in {b["kind"] for b in bodies}


def test_stable_held_for_its_connections() -> None:
    cluster = canary_cluster(
        replicas=10, worker={"image": "i:1", "replicas": 10, "autoscaling": {"targetConnectionsPerPod": 1000}}
    )
    new = worker.revision(cluster)
    state = RolloutState(stable_revision="old", canary_revision=new, weight=50)
    topology = revisions.plan_topology(
        cluster, state, {"old": live(10), new: live(5)}, stable_connections=7000
    )
    assert topology.replicas["old"] == 7 and topology.held_for_connections == 2


def test_a_revision_nobody_remembers_is_not_invented() -> None:
    cluster = canary_cluster()
    assert revisions.revision_deployment(cluster, "unknown", 3, None) is None
    state = RolloutState(stable_revision="gone", canary_revision=worker.revision(cluster), weight=20)
    topology = revisions.plan_topology(cluster, state, {})
    names = set(by_kind(revisions.children(cluster, topology, {}), "Deployment"))
    assert names == {f"demo-worker-{worker.revision(cluster)}"}


def test_rollback_keeps_the_canary_pods_out_of_traffic_until_drained() -> None:
    cluster = canary_cluster(replicas=4)
    new = worker.revision(cluster)
    state = RolloutState(
        stable_revision="old",
        canary_revision=new,
        weight=0,
        abort_reason=DegradedReason.ANALYSIS_FAILED,
        draining_revision=new,
    )
    topology = revisions.plan_topology(cluster, state, {"old": live(3), new: live(1)})
    assert topology.replicas == {new: 1, "old": 4}
    assert (topology.canary, topology.draining) == (None, new)
    bodies = revisions.children(cluster, topology, {"old": live(3), new: live(1)})
    assert by_kind(bodies, "Service")["demo-worker"]["spec"]["selector"][meta.REVISION_LABEL] == "old"
    assert "demo-worker-canary" not in by_kind(bodies, "Service")
    # Drained: the rolled-back revision is gone from the children (pruned).
    after = RolloutState(
        stable_revision="old", canary_revision=new, abort_reason=DegradedReason.ANALYSIS_FAILED
    )
    gone = revisions.plan_topology(cluster, after, {"old": live(4), new: live(1)})
    assert gone.revisions == ["old"]


def test_nginx_canary_ingress_carries_the_weight() -> None:
    cluster = canary_cluster(ingress={"enabled": True, "host": "ws.example", "className": "nginx"})
    new = worker.revision(cluster)
    state = RolloutState(stable_revision="old", canary_revision=new, weight=30)
    topology = revisions.plan_topology(cluster, state, {"old": live(7), new: live(3)})
    bodies = revisions.children(cluster, topology, {"old": live(7), new: live(3)})
    ingresses = by_kind(bodies, "Ingress")
    canary = ingresses["demo-canary"]
    annotations = canary["metadata"]["annotations"]
    assert (
        annotations[revisions.NGINX_CANARY] == "true" and annotations[revisions.NGINX_CANARY_WEIGHT] == "30"
    )
    backend = canary["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"]
    assert backend == "demo-worker-canary"
    assert revisions.NGINX_CANARY not in ingresses["demo"]["metadata"]["annotations"]
    # nginx splits by weight, so the worker Service keeps to stable.
    assert by_kind(bodies, "Service")["demo-worker"]["spec"]["selector"][meta.REVISION_LABEL] == "old"
    plain = canary_cluster(ingress={"enabled": True, "host": "ws.example", "className": "traefik"})
    assert revisions.canary_ingress(plain, 30) is None


def test_gateway_route_weights() -> None:
    route = {
        "parentRefs": [{"name": "gw", "namespace": "infra", "sectionName": "wss"}],
        "hostnames": ["ws.example"],
    }
    cluster = canary_cluster(rollout={"gatewayRoute": route})
    new = worker.revision(cluster)
    state = RolloutState(stable_revision="old", canary_revision=new, weight=25)
    topology = revisions.plan_topology(cluster, state, {"old": live(8), new: live(3)})
    bodies = revisions.children(cluster, topology, {})
    http_route = by_kind(bodies, "HTTPRoute")["demo-worker"]
    assert http_route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert http_route["spec"]["parentRefs"] == [{"name": "gw", "namespace": "infra", "sectionName": "wss"}]
    assert http_route["spec"]["hostnames"] == ["ws.example"]
    assert all(
        rule["timeouts"] == {"request": "0s", "backendRequest": "0s"} for rule in http_route["spec"]["rules"]
    )
    assert http_route["spec"]["rules"][0]["backendRefs"] == [
        {"name": "demo-worker", "port": 80, "weight": 75},
        {"name": "demo-worker-canary", "port": 80, "weight": 25},
    ]
    steady = revisions.http_route(cluster, 0, with_canary=False)
    assert steady is not None
    assert steady["spec"]["rules"][0]["backendRefs"] == [{"name": "demo-worker", "port": 80, "weight": 100}]
    assert revisions.http_route(canary_cluster(), 0, with_canary=False) is None


def test_autoscaled_canary_gets_its_share_of_the_hpa_range() -> None:
    cluster = canary_cluster(
        worker={
            "image": "i:1",
            "autoscaling": {
                "enabled": True,
                "minReplicas": 2,
                "maxReplicas": 10,
                "targetConnectionsPerPod": 100,
            },
        }
    )
    new = worker.revision(cluster)
    state = RolloutState(stable_revision="old", canary_revision=new, weight=20)
    topology = revisions.plan_topology(cluster, state, {"old": live(6), new: live(1)}, stable_connections=550)
    assert topology.replicas == {"old": None, new: None} and topology.settled
    bodies = revisions.children(cluster, topology, {})
    hpas = by_kind(bodies, "HorizontalPodAutoscaler")
    stable_hpa, canary_hpa = hpas["demo-worker"]["spec"], hpas["demo-worker-canary"]["spec"]
    assert stable_hpa["scaleTargetRef"]["name"] == "demo-worker-old"
    assert (stable_hpa["minReplicas"], stable_hpa["maxReplicas"]) == (6, 8)  # 550 sockets need 6 Pods
    assert canary_hpa["scaleTargetRef"]["name"] == f"demo-worker-{new}"
    assert (canary_hpa["minReplicas"], canary_hpa["maxReplicas"]) == (1, 2)
    assert all("replicas" not in d["spec"] for d in by_kind(bodies, "Deployment").values())
    # No canary Pods yet: not settled.
    assert not revisions.plan_topology(cluster, state, {"old": live(6)}).settled
    steady = revisions.plan_topology(cluster, RolloutState(stable_revision=new), {})
    assert steady.hpa is not None and steady.hpa.canary is None


def test_blue_green_preview_behind_its_own_service() -> None:
    cluster = blue_green_cluster(previewReplicas=2)
    new = worker.revision(cluster)
    state = RolloutState(stable_revision="old", canary_revision=new)
    topology = revisions.plan_topology(cluster, state, {"old": live(3), new: live(2, ready=1)})
    assert topology.replicas == {new: 2, "old": 3} and not topology.settled
    bodies = revisions.children(cluster, topology, {"old": live(3)})
    services = by_kind(bodies, "Service")
    assert services["demo-worker"]["spec"]["selector"][meta.REVISION_LABEL] == "old"
    assert services["demo-worker-preview"]["spec"]["selector"][meta.REVISION_LABEL] == new
    ready = revisions.plan_topology(cluster, state, {"old": live(3), new: live(2)})
    assert ready.settled
    defaulted = blue_green_cluster()
    preview = revisions.plan_topology(
        defaulted, RolloutState(stable_revision="old", canary_revision=worker.revision(defaulted)), {}
    )
    assert preview.replicas[worker.revision(defaulted)] == 3
    autoscaled = fixtures.cluster(
        {
            **fixtures.with_worker(autoscaling={"enabled": True, "minReplicas": 2}),
            "rollout": {"strategy": "blueGreen", "blueGreen": {}},
        }
    )
    rev = worker.revision(autoscaled)
    scaled = revisions.plan_topology(autoscaled, RolloutState(stable_revision="old", canary_revision=rev), {})
    assert scaled.replicas == {rev: 2, "old": None} and scaled.hpa is not None


def test_revision_of_reads_the_selector() -> None:
    assert revisions.revision_of({"spec": {"selector": {"matchLabels": {meta.REVISION_LABEL: "r"}}}}) == "r"
    assert revisions.revision_of({"spec": {}}) is None
