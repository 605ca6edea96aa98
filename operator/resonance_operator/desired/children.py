"""The full list of children of a cluster, in the order they are applied."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from resonance_operator.api.observed import ChildKey
from resonance_operator.api.spec import ResonanceCluster
from resonance_operator.desired import datastores, meta, revisions, settings, worker

Body = Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Child:
    """A desired child. ``create_only`` children (generated Secrets) are never rewritten."""

    body: dict[str, Any]
    create_only: bool = False

    @property
    def key(self) -> ChildKey:
        return ChildKey.of(self.body)


@dataclasses.dataclass(frozen=True)
class FreshSecrets:
    """Random values for Secrets the operator generates; used only when the Secret is missing."""

    jwt: str
    neo4j_password: str
    api_key: str = ""


def possible_keys(
    cluster: ResonanceCluster, *, service_monitor_crd: bool, gateway_crd: bool = False
) -> list[ChildKey]:
    """Every child this cluster could have, whatever its spec: what to observe and prune."""
    keys = [
        ChildKey("v1", "ConfigMap", settings.settings_configmap_name(cluster)),
        ChildKey("v1", "Secret", settings.jwt_secret_name(cluster)),
        ChildKey("v1", "Secret", settings.neo4j_auth_secret_name(cluster)),
        ChildKey("v1", "Service", settings.redis_service_name(cluster)),
        ChildKey("apps/v1", "StatefulSet", meta.child_name(cluster, meta.REDIS)),
        ChildKey("v1", "Service", settings.neo4j_service_name(cluster)),
        ChildKey("apps/v1", "StatefulSet", meta.child_name(cluster, meta.NEO4J)),
        ChildKey("networking.k8s.io/v1", "NetworkPolicy", meta.child_name(cluster, "datastores")),
        ChildKey("apps/v1", "Deployment", worker.name(cluster)),
        ChildKey("v1", "Service", worker.name(cluster)),
        ChildKey("networking.k8s.io/v1", "Ingress", cluster.name),
        ChildKey("autoscaling/v2", "HorizontalPodAutoscaler", worker.name(cluster)),
        ChildKey("policy/v1", "PodDisruptionBudget", worker.name(cluster)),
        # Rollouts (canary / blue-green); the revision Deployments are listed by label instead.
        ChildKey("v1", "Secret", settings.api_key_secret_name(cluster)),
        ChildKey("v1", "Service", revisions.track_name(cluster, revisions.CANARY)),
        ChildKey("v1", "Service", revisions.track_name(cluster, revisions.PREVIEW)),
        ChildKey("networking.k8s.io/v1", "Ingress", revisions.canary_ingress_name(cluster)),
        ChildKey(
            "autoscaling/v2", "HorizontalPodAutoscaler", revisions.track_name(cluster, revisions.CANARY)
        ),
    ]
    if gateway_crd:
        keys.append(ChildKey(revisions.GATEWAY_API_VERSION, "HTTPRoute", worker.name(cluster)))
    if service_monitor_crd:
        keys.append(ChildKey("monitoring.coreos.com/v1", "ServiceMonitor", worker.name(cluster)))
    return keys


def desired_children(
    cluster: ResonanceCluster,
    *,
    service_monitor_crd: bool,
    fresh: FreshSecrets,
    topology: revisions.Topology | None = None,
    live_revisions: Mapping[str, Body] | None = None,
    gateway_crd: bool = False,
) -> list[Child]:
    """Children in dependency order: config and data stores before the workers that use them.

    With a ``topology`` (canary and blue-green) the worker tier is one Deployment per
    revision and its Services, Ingresses, route and HPAs (``revisions``); else the one
    rolling Deployment.
    """
    children: list[Child] = [Child(settings.settings_configmap(cluster))]
    if cluster.spec.auth.generates_secret:
        children.append(Child(settings.jwt_secret(cluster, fresh.jwt), create_only=True))
    managed_neo4j = cluster.spec.neo4j.managed
    if managed_neo4j is not None and managed_neo4j.auth_secret_ref is None:
        children.append(Child(settings.neo4j_auth_secret(cluster, fresh.neo4j_password), create_only=True))
    if settings.uses_drain_api(cluster):
        children.append(Child(settings.api_key_secret(cluster, fresh.api_key), create_only=True))
    optional = [
        datastores.redis_service(cluster),
        datastores.redis_stateful_set(cluster),
        datastores.neo4j_service(cluster),
        datastores.neo4j_stateful_set(cluster),
        datastores.network_policy(cluster),
    ]
    if topology is None:
        optional += [
            worker.deployment(cluster),
            worker.service(cluster),
            worker.ingress(cluster),
            worker.horizontal_pod_autoscaler(cluster),
        ]
    else:
        tier = revisions.children(cluster, topology, live_revisions or {})
        optional += [body for body in tier if gateway_crd or body["kind"] != "HTTPRoute"]
    optional += [
        worker.pod_disruption_budget(cluster),
        worker.service_monitor(cluster, crd_present=service_monitor_crd),
    ]
    children.extend(Child(body) for body in optional if body is not None)
    return children
