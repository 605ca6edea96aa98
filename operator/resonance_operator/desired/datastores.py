"""Managed Redis and Neo4j (one-replica StatefulSets with headless Services),
and the NetworkPolicy that lets only this cluster's workers reach them."""

from __future__ import annotations

from typing import Any

from resonance_operator.api.spec import Persistence, ResonanceCluster
from resonance_operator.desired import meta, settings, workload

REDIS_DATA = "data"
NEO4J_DATA = "data"


def _volume_claim(claim_name: str, size: str, storage_class: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if storage_class is not None:
        spec["storageClassName"] = storage_class
    return {"metadata": {"name": claim_name}, "spec": spec}


def _headless_service(
    cluster: ResonanceCluster, component: str, ports: list[dict[str, Any]]
) -> dict[str, Any]:
    return meta.with_spec_hash(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta.metadata(cluster, meta.child_name(cluster, component), component),
            "spec": {
                "clusterIP": "None",
                "selector": meta.selector_labels(cluster, component),
                "ports": ports,
                # Workers must resolve the pod before it is ready, so they can retry while it starts.
                "publishNotReadyAddresses": True,
            },
        }
    )


def _stateful_set(
    cluster: ResonanceCluster,
    component: str,
    pod_spec: dict[str, Any],
    claims: list[dict[str, Any]],
) -> dict[str, Any]:
    name = meta.child_name(cluster, component)
    spec: dict[str, Any] = {
        "serviceName": name,
        "replicas": 1,
        "selector": {"matchLabels": meta.selector_labels(cluster, component)},
        "template": {"metadata": {"labels": meta.labels(cluster, component)}, "spec": pod_spec},
    }
    if claims:
        spec["volumeClaimTemplates"] = claims
    return meta.with_spec_hash(
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": meta.metadata(cluster, name, component),
            "spec": spec,
        }
    )


def _data_volume(persistence: Persistence, claim_name: str) -> tuple[list[dict[str, Any]], list[Any]]:
    """(pod volumes, claim templates): a PVC when persistent, else an emptyDir."""
    if persistence.enabled:
        return [], [_volume_claim(claim_name, persistence.size, persistence.storage_class_name)]
    return [{"name": claim_name, "emptyDir": {}}], []


def redis_stateful_set(cluster: ResonanceCluster) -> dict[str, Any] | None:
    managed = cluster.spec.redis.managed
    if cluster.spec.redis.external is not None or managed is None:
        return None
    volumes, claims = _data_volume(managed.persistence, REDIS_DATA)
    container: dict[str, Any] = {
        "name": meta.REDIS,
        "image": managed.image,
        "args": [
            "redis-server",
            "--appendonly",
            "yes" if managed.persistence.enabled else "no",
            "--dir",
            "/data",
        ],
        "ports": [{"name": "redis", "containerPort": settings.REDIS_PORT, "protocol": "TCP"}],
        "volumeMounts": [{"name": REDIS_DATA, "mountPath": "/data"}],
        "readinessProbe": {"exec": {"command": ["redis-cli", "ping"]}, "periodSeconds": 5},
        "livenessProbe": {"tcpSocket": {"port": "redis"}, "periodSeconds": 10},
        "securityContext": workload.container_security_context(),
    }
    if resources := workload.resources(managed.resources):
        container["resources"] = resources
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "securityContext": workload.pod_security_context(),
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
    }
    if volumes:
        pod_spec["volumes"] = volumes
    workload.apply_scheduling(pod_spec, managed.scheduling)
    return _stateful_set(cluster, meta.REDIS, pod_spec, claims)


def redis_service(cluster: ResonanceCluster) -> dict[str, Any] | None:
    if cluster.spec.redis.external is not None:
        return None
    return _headless_service(
        cluster,
        meta.REDIS,
        [{"name": "redis", "port": settings.REDIS_PORT, "targetPort": "redis", "protocol": "TCP"}],
    )


def neo4j_stateful_set(cluster: ResonanceCluster) -> dict[str, Any] | None:
    managed = cluster.spec.neo4j.managed
    if managed is None:
        return None
    password = settings.neo4j_password_ref(cluster)
    assert password is not None  # managed Neo4j always has one (given or generated)
    container: dict[str, Any] = {
        "name": meta.NEO4J,
        "image": managed.image,
        "env": [
            {
                "name": "NEO4J_PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": password.name, "key": password.key}},
            },
            # Kubernetes expands $(VAR) from earlier variables, so the password never lands in the spec.
            {"name": "NEO4J_AUTH", "value": "neo4j/$(NEO4J_PASSWORD)"},
        ],
        "ports": [
            {"name": "bolt", "containerPort": settings.NEO4J_BOLT_PORT, "protocol": "TCP"},
            {"name": "http", "containerPort": settings.NEO4J_HTTP_PORT, "protocol": "TCP"},
        ],
        "volumeMounts": [{"name": NEO4J_DATA, "mountPath": "/data"}],
        "readinessProbe": {"tcpSocket": {"port": "bolt"}, "periodSeconds": 5},
        "livenessProbe": {"tcpSocket": {"port": "bolt"}, "periodSeconds": 15, "failureThreshold": 10},
        # Neo4j writes its config and logs under its home, so the root file system stays writable.
        "securityContext": workload.container_security_context(read_only_root=False),
    }
    if resources := workload.resources(managed.resources):
        container["resources"] = resources
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "securityContext": workload.pod_security_context(),
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
    }
    volumes, claims = _data_volume(managed.persistence, NEO4J_DATA)
    if volumes:
        pod_spec["volumes"] = volumes
    workload.apply_scheduling(pod_spec, managed.scheduling)
    return _stateful_set(cluster, meta.NEO4J, pod_spec, claims)


def neo4j_service(cluster: ResonanceCluster) -> dict[str, Any] | None:
    if cluster.spec.neo4j.managed is None:
        return None
    return _headless_service(
        cluster,
        meta.NEO4J,
        [
            {"name": "bolt", "port": settings.NEO4J_BOLT_PORT, "targetPort": "bolt", "protocol": "TCP"},
            {"name": "http", "port": settings.NEO4J_HTTP_PORT, "targetPort": "http", "protocol": "TCP"},
        ],
    )


def network_policy(cluster: ResonanceCluster) -> dict[str, Any] | None:
    """Only this cluster's worker pods may open connections to its Redis and Neo4j."""
    managed = [
        component
        for component, present in (
            (meta.REDIS, cluster.spec.redis.external is None),
            (meta.NEO4J, cluster.spec.neo4j.managed is not None),
        )
        if present
    ]
    if not cluster.spec.network_policy.enabled or not managed:
        return None
    return meta.with_spec_hash(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta.metadata(cluster, meta.child_name(cluster, "datastores"), meta.WORKER),
            "spec": {
                "podSelector": {
                    "matchLabels": {meta.CLUSTER_LABEL: cluster.name},
                    "matchExpressions": [{"key": meta.COMPONENT_LABEL, "operator": "In", "values": managed}],
                },
                "policyTypes": ["Ingress"],
                "ingress": [
                    {"from": [{"podSelector": {"matchLabels": meta.selector_labels(cluster, meta.WORKER)}}]}
                ],
            },
        }
    )
