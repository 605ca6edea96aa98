"""Managed Redis and Neo4j (one-replica StatefulSets with headless Services),
and the NetworkPolicy that lets only this cluster's workers reach them."""

from __future__ import annotations

from typing import Any

from resonance_operator.api.spec import Persistence, ResonanceCluster
from resonance_operator.desired import meta, redis_tls, settings, workload

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
    replicas: int = 1,
) -> dict[str, Any]:
    name = meta.child_name(cluster, component)
    spec: dict[str, Any] = {
        "serviceName": name,
        "replicas": replicas,
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


def _find_primary(cluster: ResonanceCluster) -> list[str]:
    """Shell lines setting ``SELF`` (this pod's stable DNS name) and ``PRIMARY`` (what the Sentinels
    name; pod 0 when none answers, i.e. the first start)."""
    service = f"{settings.redis_service_name(cluster)}.{cluster.namespace}.svc"
    tls = f" {redis_tls.CLI_FLAGS}" if redis_tls.managed_secret(cluster) is not None else ""
    return [
        f'SELF="$(hostname).{service}"',
        f'PRIMARY="$(redis-cli -h {settings.redis_sentinel_service_name(cluster)} -p '
        f"{settings.REDIS_SENTINEL_PORT}{tls} --raw sentinel get-master-addr-by-name "
        f'{settings.REDIS_SENTINEL_SERVICE} 2>/dev/null | head -n1 || true)"',
        f'[ -n "$PRIMARY" ] || PRIMARY="{meta.child_name(cluster, meta.REDIS)}-0.{service}"',
    ]


def _redis_start_script(cluster: ResonanceCluster) -> str:
    """The Redis container's start: primary or replica of the primary Sentinel names (pod 0 at first)."""
    managed = cluster.spec.redis.managed
    assert managed is not None
    args = ["--dir /data", f"--appendonly {'yes' if managed.persistence.enabled else 'no'}"]
    if managed.maxmemory is not None:
        args += [f"--maxmemory {managed.maxmemory}", "--maxmemory-policy noeviction"]
    if managed.tls is not None:
        args += redis_tls.server_args(settings.REDIS_PORT)
    lines = ["set -eu", f"set -- redis-server {' '.join(args)}"]
    if managed.password.enabled:
        lines.append('set -- "$@" --requirepass "$REDIS_PASSWORD" --masterauth "$REDIS_PASSWORD"')
    if managed.sentinel.enabled:
        lines += [
            *_find_primary(cluster),
            'set -- "$@" --replica-announce-ip "$SELF"',
            f'[ "$PRIMARY" = "$SELF" ] || set -- "$@" --replicaof "$PRIMARY" {settings.REDIS_PORT}',
        ]
    lines.append('exec "$@"')
    return "\n".join(lines) + "\n"


def _sentinel_start_script(cluster: ResonanceCluster) -> str:
    """The Sentinel container's start: a fresh config monitoring the primary its peers name."""
    managed = cluster.spec.redis.managed
    assert managed is not None
    group = settings.REDIS_SENTINEL_SERVICE
    sentinel = managed.sentinel
    return (
        "\n".join(
            [
                "set -eu",
                *_find_primary(cluster),
                "cat > /sentinel/sentinel.conf <<EOF",
                *(
                    redis_tls.sentinel_conf(settings.REDIS_SENTINEL_PORT)
                    if managed.tls is not None
                    else [f"port {settings.REDIS_SENTINEL_PORT}"]
                ),
                "sentinel resolve-hostnames yes",
                "sentinel announce-hostnames yes",
                "sentinel announce-ip $SELF",
                f"sentinel monitor {group} $PRIMARY {settings.REDIS_PORT} {sentinel.quorum}",
                f"sentinel down-after-milliseconds {group} {sentinel.down_after_milliseconds}",
                f"sentinel failover-timeout {group} 60000",
                f"sentinel parallel-syncs {group} 1",
                "EOF",
                f'[ -z "${{REDIS_PASSWORD:-}}" ] || echo "sentinel auth-pass {group} $REDIS_PASSWORD" '
                ">> /sentinel/sentinel.conf",
                "exec redis-sentinel /sentinel/sentinel.conf",
            ]
        )
        + "\n"
    )


def _password_env(cluster: ResonanceCluster) -> list[dict[str, Any]]:
    ref = settings.redis_password_ref(cluster)
    if ref is None:
        return []
    return [{"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}]


def redis_stateful_set(cluster: ResonanceCluster) -> dict[str, Any] | None:
    managed = cluster.spec.redis.managed
    if cluster.spec.redis.external is not None or managed is None:
        return None
    volumes, claims = _data_volume(managed.persistence, REDIS_DATA)
    plain = not (
        managed.sentinel.enabled
        or managed.password.enabled
        or managed.maxmemory is not None
        or managed.tls is not None
    )
    cli = f"redis-cli {redis_tls.CLI_FLAGS}" if managed.tls is not None else "redis-cli"
    ping = [*cli.split(), "ping"]
    if managed.password.enabled:
        ping = ["sh", "-c", f'REDISCLI_AUTH="$REDIS_PASSWORD" {cli} ping']
    tls_volume = None if managed.tls is None else redis_tls.server_volume(managed.tls.secret_name)
    container: dict[str, Any] = {
        "name": meta.REDIS,
        "image": managed.image,
        "ports": [{"name": "redis", "containerPort": settings.REDIS_PORT, "protocol": "TCP"}],
        "volumeMounts": [
            {"name": REDIS_DATA, "mountPath": "/data"},
            *([tls_volume[1]] if tls_volume else []),
        ],
        "readinessProbe": {"exec": {"command": ping}, "periodSeconds": 5},
        "livenessProbe": {"tcpSocket": {"port": "redis"}, "periodSeconds": 10},
        "securityContext": workload.container_security_context(),
    }
    if plain:  # one Redis, no password, no limit: as before issue 18, so existing clusters keep their pods
        container["args"] = [
            "redis-server",
            "--appendonly",
            "yes" if managed.persistence.enabled else "no",
            "--dir",
            "/data",
        ]
    else:
        container["command"] = ["sh", "-c", _redis_start_script(cluster)]
        if env := _password_env(cluster):
            container["env"] = env
    if resources := workload.resources(managed.resources):
        container["resources"] = resources
    containers = [container]
    if managed.sentinel.enabled:
        sentinel: dict[str, Any] = {
            "name": "sentinel",
            "image": managed.image,
            "command": ["sh", "-c", _sentinel_start_script(cluster)],
            "ports": [{"name": "sentinel", "containerPort": settings.REDIS_SENTINEL_PORT, "protocol": "TCP"}],
            "volumeMounts": [
                {"name": "sentinel", "mountPath": "/sentinel"},
                *([tls_volume[1]] if tls_volume else []),
            ],
            "readinessProbe": {
                "exec": {"command": [*cli.split(), "-p", str(settings.REDIS_SENTINEL_PORT), "ping"]},
                "periodSeconds": 5,
            },
            "securityContext": workload.container_security_context(),
        }
        if env := _password_env(cluster):
            sentinel["env"] = env
        containers.append(sentinel)
        volumes = [*volumes, {"name": "sentinel", "emptyDir": {}}]
    if tls_volume is not None:
        volumes = [*volumes, tls_volume[0]]
    pod_spec: dict[str, Any] = {
        "containers": containers,
        "securityContext": workload.pod_security_context(),
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
    }
    if volumes:
        pod_spec["volumes"] = volumes
    if managed.replicas > 1:
        pod_spec["affinity"] = {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "labelSelector": {"matchLabels": meta.selector_labels(cluster, meta.REDIS)},
                            "topologyKey": "kubernetes.io/hostname",
                        },
                    }
                ]
            }
        }
    workload.apply_scheduling(pod_spec, managed.scheduling)
    return _stateful_set(cluster, meta.REDIS, pod_spec, claims, managed.replicas)


def redis_sentinel_service(cluster: ResonanceCluster) -> dict[str, Any] | None:
    """A ClusterIP Service over every pod's Sentinel: what workers (and starting pods) ask."""
    if not settings.managed_sentinel(cluster):
        return None
    return meta.with_spec_hash(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta.metadata(cluster, settings.redis_sentinel_service_name(cluster), meta.REDIS),
            "spec": {
                "selector": meta.selector_labels(cluster, meta.REDIS),
                "ports": [
                    {
                        "name": "sentinel",
                        "port": settings.REDIS_SENTINEL_PORT,
                        "targetPort": "sentinel",
                        "protocol": "TCP",
                    }
                ],
                "publishNotReadyAddresses": True,
            },
        }
    )


def redis_pod_disruption_budget(cluster: ResonanceCluster) -> dict[str, Any] | None:
    """With replicas: at most one Redis pod voluntarily down at a time (a drain never takes the quorum)."""
    managed = cluster.spec.redis.managed
    if cluster.spec.redis.external is not None or managed is None or managed.replicas < 2:
        return None
    return meta.with_spec_hash(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": meta.metadata(cluster, meta.child_name(cluster, meta.REDIS), meta.REDIS),
            "spec": {
                "selector": {"matchLabels": meta.selector_labels(cluster, meta.REDIS)},
                "maxUnavailable": 1,
            },
        }
    )


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


def _datastore_clients(cluster: ResonanceCluster) -> list[dict[str, Any]]:
    """Who may connect: the workers; with replicas, the Redis pods themselves (replication, Sentinel);
    with backups, the backup Job's pods."""
    clients = [{"podSelector": {"matchLabels": meta.selector_labels(cluster, meta.WORKER)}}]
    managed = cluster.spec.redis.managed
    if cluster.spec.redis.external is None and managed is not None and managed.replicas > 1:
        clients.append({"podSelector": {"matchLabels": meta.selector_labels(cluster, meta.REDIS)}})
    if cluster.spec.backup is not None:
        clients.append({"podSelector": {"matchLabels": meta.selector_labels(cluster, meta.BACKUP)}})
    return clients


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
                "ingress": [{"from": _datastore_clients(cluster)}],
            },
        }
    )
