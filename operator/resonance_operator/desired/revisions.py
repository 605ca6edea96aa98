"""Worker children of a canary or blue-green rollout: one Deployment per revision,
the Services that steer new connections, and the HPAs that share the range.

:func:`plan_topology` turns the rollout state (``status.rollout``), the live
revision Deployments and the stable Pods' open connections into a
:class:`Topology`; :func:`children` builds the objects from it. Both are pure.

Revisions are hashes of the worker Pod template (settings inlined, see
``worker.pod_template``). A Deployment is named after its revision, so a
promotion only changes which revision the Services call stable: no Pod is
re-templated and every socket moves at most once. A revision that is not the
spec's any more (stable during a canary, or the one draining) keeps the template
it runs with, copied from its live Deployment.

Traffic (new connections only; open sockets stay where they are):

* replica ratio (default): the one worker Service selects every revision while a
  canary takes traffic, so the split follows the Pod counts;
* ingress-nginx (``spec.ingress`` with an nginx class): the worker Service selects
  stable only and a canary Ingress sends ``canary-weight`` % to the canary Service;
* Gateway API (``spec.rollout.gatewayRoute``): an ``HTTPRoute`` with weighted
  backendRefs to the stable (worker) and canary Services.

Blue-green: the worker Service selects stable only, the preview Service the new
revision. Once a revision loses (promotion or rollback) no Service selects it:
new connections stop reaching it at once, and its workers drain the open ones.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import Any

from resonance_operator.api.spec import ResonanceCluster, RolloutStrategy
from resonance_operator.desired import keda, meta, worker
from resonance_operator.rollout import canary as replica_math
from resonance_operator.rollout.state import RolloutState

Body = Mapping[str, Any]

CANARY = "canary"
PREVIEW = "preview"
GATEWAY_API_VERSION = "gateway.networking.k8s.io/v1"
NGINX_CANARY = "nginx.ingress.kubernetes.io/canary"
NGINX_CANARY_WEIGHT = "nginx.ingress.kubernetes.io/canary-weight"


def deployment_name(cluster: ResonanceCluster, revision: str) -> str:
    return f"{worker.name(cluster)}-{revision}"


def track_name(cluster: ResonanceCluster, track: str) -> str:
    """``<cluster>-worker-canary`` / ``-preview``: the Service (and HPA) of the new revision."""
    return f"{worker.name(cluster)}-{track}"


def canary_ingress_name(cluster: ResonanceCluster) -> str:
    return f"{cluster.name}-{CANARY}"


def revision_of(body: Body) -> str | None:
    labels = body.get("spec", {}).get("selector", {}).get("matchLabels", {})
    value = labels.get(meta.REVISION_LABEL)
    return None if value is None else str(value)


@dataclasses.dataclass(frozen=True)
class Topology:
    """Which worker revisions run, with how many Pods, and where new connections go."""

    stable: str
    canary: str | None = None
    """The new revision taking traffic (canary) or previewed (blue-green)."""
    draining: str | None = None
    weight: int = 0
    replicas: Mapping[str, int | None] = dataclasses.field(default_factory=dict)
    """Pods per revision; ``None`` leaves the count to the revision's HPA."""
    hpa: replica_math.RolloutHpa | None = None
    held_for_connections: int = 0
    settled: bool = True
    """The replica split reached its targets (a canary step waits for this)."""

    @property
    def revisions(self) -> list[str]:
        return [r for r in (self.stable, self.canary, self.draining) if r is not None]


def _live_replicas(live: Body | None) -> int:
    if live is None:
        return 0
    return int(live.get("spec", {}).get("replicas", 0))


def _ready(live: Body | None) -> int:
    if live is None:
        return 0
    return int(live.get("status", {}).get("readyReplicas", 0))


def plan_topology(
    cluster: ResonanceCluster,
    state: RolloutState,
    live: Mapping[str, Body],
    *,
    stable_connections: int | None = None,
    secrets_hash: str | None = None,
) -> Topology:
    """The revisions to run for ``state``; ``live`` maps revisions to their live Deployments."""
    spec = cluster.spec
    autoscaling = spec.worker.autoscaling
    desired = spec.worker.replicas
    stable = state.stable_revision or worker.revision(cluster, secrets_hash=secrets_hash)
    draining = state.draining_revision
    in_flight = state.canary_revision != draining and state.abort_reason is None
    new = state.canary_revision if in_flight else None
    replicas: dict[str, int | None] = {}
    if draining is not None and draining in live:
        # The losing revision keeps its Pods (out of new traffic) until they have drained.
        replicas[draining] = _live_replicas(live[draining])
    floor = 0
    capacity = autoscaling.target_connections_per_pod
    load = None
    if stable_connections is not None and capacity:
        load = replica_math.ConnectionLoad(stable_connections, capacity)
        floor = replica_math.connection_floor(stable_connections, capacity)

    if new is not None and spec.rollout.strategy is RolloutStrategy.BLUE_GREEN:
        options = spec.rollout.blue_green
        preview = options.preview_replicas if options and options.preview_replicas else None
        replicas[new] = preview or (autoscaling.min_replicas if autoscaling.enabled else desired)
        replicas[stable] = None if autoscaling.enabled else desired
        bg_hpa = (
            replica_math.rollout_hpa(autoscaling.min_replicas, autoscaling.max_replicas, 0)
            if autoscaling.enabled
            else None
        )
        settled = _ready(live.get(new)) >= (replicas[new] or 0)
        return Topology(stable, new, draining, 0, replicas, bg_hpa, 0, settled)

    if new is not None and spec.rollout.strategy is RolloutStrategy.CANARY and state.weight > 0:
        if autoscaling.enabled:
            hpa = replica_math.rollout_hpa(
                autoscaling.min_replicas,
                autoscaling.max_replicas,
                state.weight,
                stable_connection_floor=min(floor, autoscaling.max_replicas),
            )
            replicas[stable] = None
            replicas[new] = None
            canary_live = live.get(new)
            wanted = hpa.canary.min_replicas if hpa.canary else 1
            settled = canary_live is not None and _ready(canary_live) >= max(wanted, 1)
            return Topology(stable, new, draining, state.weight, replicas, hpa, 0, settled)
        current = replica_math.Current(
            stable=_live_replicas(live.get(stable)) if stable in live else desired,
            canary=_live_replicas(live.get(new)),
            canary_available=_ready(live.get(new)),
        )
        split = replica_math.basic_canary_replicas(
            desired,
            state.weight,
            current,
            max_surge=spec.rollout.rolling.max_surge,
            max_unavailable=spec.rollout.rolling.max_unavailable,
            load=load,
        )
        replicas[stable] = split.stable
        replicas[new] = split.canary
        # Settled once the live counts are the targets (not merely planned) and the canary is ready.
        settled = (
            split.settled
            and (current.stable, current.canary) == (split.stable, split.canary)
            and _ready(live.get(new)) >= split.target_canary
        )
        return Topology(
            stable, new, draining, state.weight, replicas, None, split.held_for_connections, settled
        )

    replicas[stable] = None if autoscaling.enabled else desired
    steady_hpa = (
        replica_math.rollout_hpa(autoscaling.min_replicas, autoscaling.max_replicas, 0)
        if autoscaling.enabled
        else None
    )
    # A new revision with no Pods yet (weight 0, or waiting for a drain) is not ready.
    return Topology(stable, None, draining, 0, replicas, steady_hpa, 0, new is None)


def revision_deployment(
    cluster: ResonanceCluster,
    revision: str,
    replicas: int | None,
    live: Body | None,
    secrets_hash: str | None = None,
) -> dict[str, Any] | None:
    """The Deployment of one revision: from the spec when it is the spec's, else from its live object.

    ``None`` when the revision is not the spec's and no live Deployment remembers its template.
    """
    if revision == worker.revision(cluster, secrets_hash=secrets_hash):
        template = worker.pod_template(cluster, inline_settings=True, secrets_hash=secrets_hash)
    elif live is not None:
        template = copy.deepcopy(dict(live["spec"]["template"]))
        template.get("metadata", {}).pop("creationTimestamp", None)
    else:
        return None
    template.setdefault("metadata", {}).setdefault("labels", {})[meta.REVISION_LABEL] = revision
    selector = {**meta.selector_labels(cluster, meta.WORKER), meta.REVISION_LABEL: revision}
    body_meta = meta.metadata(cluster, deployment_name(cluster, revision), meta.WORKER)
    body_meta["labels"][meta.REVISION_LABEL] = revision
    rolling = cluster.spec.rollout.rolling
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector},
        # A revision's template never changes; the strategy only matters for a hand edit.
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {
                "maxSurge": meta.int_or_string(rolling.max_surge),
                "maxUnavailable": meta.int_or_string(rolling.max_unavailable),
            },
        },
        "template": template,
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return meta.with_spec_hash(
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": body_meta, "spec": spec}
    )


def _traffic_split_by_router(cluster: ResonanceCluster) -> bool:
    return worker.nginx_ingress(cluster) or cluster.spec.rollout.gateway_route is not None


def canary_ingress(cluster: ResonanceCluster, weight: int) -> dict[str, Any] | None:
    """ingress-nginx's canary Ingress: ``weight`` % of new requests to the canary Service."""
    if not worker.nginx_ingress(cluster):
        return None
    return worker.ingress(
        cluster,
        ingress_name=canary_ingress_name(cluster),
        service_name=track_name(cluster, CANARY),
        extra_annotations={NGINX_CANARY: "true", NGINX_CANARY_WEIGHT: str(weight)},
    )


def http_route(cluster: ResonanceCluster, weight: int, *, with_canary: bool) -> dict[str, Any] | None:
    """A Gateway API ``HTTPRoute`` to the stable (worker) Service and, during a canary, the canary one."""
    route = cluster.spec.rollout.gateway_route
    if route is None:
        return None
    backends: list[dict[str, Any]] = [
        {"name": worker.name(cluster), "port": worker.SERVICE_PORT, "weight": 100 - weight}
    ]
    if with_canary:
        backends.append({"name": track_name(cluster, CANARY), "port": worker.SERVICE_PORT, "weight": weight})
    parents = [
        {
            key: value
            for key, value in (
                ("name", ref.name),
                ("namespace", ref.namespace),
                ("sectionName", ref.section_name),
            )
            if value is not None
        }
        for ref in route.parent_refs
    ]
    spec: dict[str, Any] = {
        "parentRefs": parents,
        "rules": [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": route.path}}],
                "backendRefs": backends,
                # A WebSocket is one request that lasts for hours: "0s" disables the request timeouts
                # (Gateway API GEP-1742; implementations that cannot disable one use their longest).
                "timeouts": {"request": "0s", "backendRequest": "0s"},
            }
        ],
    }
    if route.hostnames:
        spec["hostnames"] = list(route.hostnames)
    return meta.with_spec_hash(
        {
            "apiVersion": GATEWAY_API_VERSION,
            "kind": "HTTPRoute",
            "metadata": meta.metadata(cluster, worker.name(cluster), meta.WORKER),
            "spec": spec,
        }
    )


def _blue_green(cluster: ResonanceCluster) -> bool:
    return cluster.spec.rollout.strategy is RolloutStrategy.BLUE_GREEN


def _canary_in_traffic(cluster: ResonanceCluster, topology: Topology) -> bool:
    return topology.canary is not None and not _blue_green(cluster) and topology.weight > 0


def traffic_weights(
    cluster: ResonanceCluster, topology: Topology, live: Mapping[str, Body]
) -> dict[str, int]:
    """Percent of new connections each track gets, as the traffic really splits.

    Behind ingress-nginx's canary Ingress or an HTTPRoute the router applies the weight as set. With
    plain Services the split is the replica ratio: the worker Service spreads new connections over the
    ready Pods of every revision it selects, so 1 stable and 1 canary Pod split 50/50 whatever the
    step's ``setWeight``, and a canary with no ready Pod yet gets nothing (the configured weight is
    shown only when no Pod of either is ready).
    """
    if _traffic_split_by_router(cluster) or not _canary_in_traffic(cluster, topology):
        weight = topology.weight if _canary_in_traffic(cluster, topology) else 0
        return {"stable": 100 - weight, "canary": weight}
    stable, canary = _ready(live.get(topology.stable)), _ready(live.get(topology.canary or ""))
    if stable + canary == 0:
        return {"stable": 100 - topology.weight, "canary": topology.weight}
    share = round(100 * canary / (stable + canary))
    return {"stable": 100 - share, "canary": share}


def deployments(
    cluster: ResonanceCluster,
    topology: Topology,
    live: Mapping[str, Body],
    secrets_hash: str | None = None,
) -> list[dict[str, Any]]:
    """One Deployment per revision that runs (stable, new, draining)."""
    out = []
    for revision in topology.revisions:
        replicas = topology.replicas.get(revision)
        body = revision_deployment(cluster, revision, replicas, live.get(revision), secrets_hash)
        if body is not None:
            out.append(body)
    return out


def services(cluster: ResonanceCluster, topology: Topology) -> list[dict[str, Any]]:
    """The worker Service (stable, or every revision while a replica-ratio canary takes traffic) and
    the new revision's own Service (canary or preview)."""
    # Replica ratio: while a canary takes traffic, the one Service spreads over every revision.
    everyone = (
        _canary_in_traffic(cluster, topology)
        and not _traffic_split_by_router(cluster)
        and topology.draining is None
    )
    out = [worker.service(cluster, revision=None if everyone else topology.stable)]
    if topology.canary is not None:
        track = PREVIEW if _blue_green(cluster) else CANARY
        out.append(worker.service(cluster, revision=topology.canary, service_name=track_name(cluster, track)))
    return out


def ingresses(cluster: ResonanceCluster, topology: Topology) -> list[dict[str, Any]]:
    """The worker Ingress, and ingress-nginx's canary Ingress while a canary takes traffic."""
    out = []
    if (ingress := worker.ingress(cluster)) is not None:
        out.append(ingress)
    if (
        _canary_in_traffic(cluster, topology)
        and (nginx := canary_ingress(cluster, topology.weight)) is not None
    ):
        out.append(nginx)
    return out


def routes(cluster: ResonanceCluster, topology: Topology) -> list[dict[str, Any]]:
    """The Gateway API ``HTTPRoute``, weighted while a canary takes traffic."""
    in_traffic = _canary_in_traffic(cluster, topology)
    route = http_route(cluster, topology.weight if in_traffic else 0, with_canary=in_traffic)
    return [] if route is None else [route]


def autoscalers(cluster: ResonanceCluster, topology: Topology) -> list[dict[str, Any]]:
    """The stable revision's HPA and, while a canary runs, the canary's, each with its share of the range."""
    if topology.hpa is None:
        return []
    out = []
    stable_range = (topology.hpa.stable.min_replicas, topology.hpa.stable.max_replicas)
    hpa = worker.horizontal_pod_autoscaler(
        cluster, target=deployment_name(cluster, topology.stable), replica_range=stable_range
    )
    if hpa is not None:
        out.append(hpa)
    if topology.canary is not None and topology.hpa.canary is not None:
        canary_range = (topology.hpa.canary.min_replicas, topology.hpa.canary.max_replicas)
        canary_hpa = worker.horizontal_pod_autoscaler(
            cluster,
            target=deployment_name(cluster, topology.canary),
            hpa_name=track_name(cluster, CANARY),
            replica_range=canary_range,
        )
        if canary_hpa is not None:
            out.append(canary_hpa)
    return out


def scaled_objects(cluster: ResonanceCluster, topology: Topology) -> list[dict[str, Any]]:
    """KEDA's ScaledObject during a rollout: it scales the stable revision within its share of the range
    (the canary keeps its own CPU HPA, :func:`autoscalers`)."""
    if topology.hpa is None:
        return []
    stable_range = (topology.hpa.stable.min_replicas, topology.hpa.stable.max_replicas)
    scaled = keda.scaled_object(
        cluster, target=deployment_name(cluster, topology.stable), replica_range=stable_range
    )
    return [] if scaled is None else [scaled]


def children(cluster: ResonanceCluster, topology: Topology, live: Mapping[str, Body]) -> list[dict[str, Any]]:
    """Every worker-tier object of a canary or blue-green cluster (the rest is as for rolling)."""
    return [
        *deployments(cluster, topology, live),
        *services(cluster, topology),
        *ingresses(cluster, topology),
        *routes(cluster, topology),
        *autoscalers(cluster, topology),
    ]
