"""The worker tier: Deployment, Service, Ingress, HPA, PDB, ServiceMonitor and PodMonitor."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from resonance_operator.api.spec import ResonanceCluster
from resonance_operator.desired import features, meta, redis_tls, secrets, settings, sizing, workload

HTTP_PORT_NAME = "http"
SERVICE_PORT = 80
WEBSOCKET_PATH = "/connection/websocket"
# Extra time on top of the drain window, for the process to flush and exit.
SHUTDOWN_MARGIN_SECONDS = 10
REVISION_LENGTH = 10

# What ingress-nginx needs to keep a WebSocket open for an hour instead of 60 s (far above twice the
# workers' ping interval, 25 s), unbuffered.
NGINX_WEBSOCKET_ANNOTATIONS = {
    "nginx.ingress.kubernetes.io/proxy-read-timeout": "3600",
    "nginx.ingress.kubernetes.io/proxy-send-timeout": "3600",
    "nginx.ingress.kubernetes.io/proxy-http-version": "1.1",
    "nginx.ingress.kubernetes.io/proxy-buffering": "off",
}
NGINX_BODY_SIZE = "nginx.ingress.kubernetes.io/proxy-body-size"


def scale_down_slowly() -> dict[str, Any]:
    """The autoscaler's behaviour (the HPA's, and the one KEDA's HPA gets): scale in slowly, since every
    removed pod reconnects all its clients."""
    return {
        "scaleDown": {
            "stabilizationWindowSeconds": 300,
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
        }
    }


def name(cluster: ResonanceCluster) -> str:
    return meta.child_name(cluster, meta.WORKER)


def termination_grace_seconds(cluster: ResonanceCluster) -> int:
    """Long enough to drain: the larger of the spec's grace and the drain window plus a margin."""
    worker = cluster.spec.worker
    drain = cluster.spec.rollout.drain.max_drain_seconds
    return max(worker.termination_grace_period_seconds, drain + SHUTDOWN_MARGIN_SECONDS)


def _env(cluster: ResonanceCluster) -> list[dict[str, Any]]:
    environment = settings.worker_environment(cluster)
    env: list[dict[str, Any]] = [
        {"name": "RESONANCE_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    for variable, ref in sorted(environment.from_secrets.items()):
        env.append({"name": variable, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    env.extend(dict(item) for item in cluster.spec.worker.env)
    return env


def _probe(path: str, *, period: int, failure_threshold: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": HTTP_PORT_NAME},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failure_threshold,
    }


def pod_template(
    cluster: ResonanceCluster, *, inline_settings: bool = False, secrets_hash: str | None = None
) -> dict[str, Any]:
    """The worker Pod template from the spec.

    ``secrets_hash`` (``desired/secrets.py``) goes into an annotation, so a changed Secret rolls the Pods.

    ``inline_settings`` puts the settings in the container's own ``env`` instead of
    ``envFrom`` the shared ConfigMap, so a revision carries everything it runs with:
    a canary's settings change must not reach the stable Pods through the ConfigMap.
    """
    worker = cluster.spec.worker
    environment = settings.worker_environment(cluster)
    container: dict[str, Any] = {
        "name": meta.WORKER,
        "image": worker.image,
        "imagePullPolicy": worker.image_pull_policy,
        "ports": [{"name": HTTP_PORT_NAME, "containerPort": worker.port, "protocol": "TCP"}],
    }
    if inline_settings:
        plain = [{"name": key, "value": value} for key, value in sorted(environment.plain.items())]
        container["env"] = plain + _env(cluster)
    else:
        container["envFrom"] = [{"configMapRef": {"name": settings.settings_configmap_name(cluster)}}]
        container["env"] = _env(cluster)
    container.update(
        {
            "startupProbe": _probe("/health", period=2, failure_threshold=30),
            "livenessProbe": _probe("/health", period=10, failure_threshold=3),
            "readinessProbe": _probe("/ready", period=5, failure_threshold=2),
            "securityContext": workload.container_security_context(),
        }
    )
    if resources := workload.resources(sizing.worker_resources(worker.resources)):
        container["resources"] = resources
    container["volumeMounts"] = [features.volume_mount()]
    volumes = [features.volume(cluster)]
    if (tls := redis_tls.client_volume(cluster)) is not None:  # the CA (and client certificate) for Redis
        volumes.append(tls[0])
        container["volumeMounts"].append(tls[1])
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "volumes": volumes,
        "terminationGracePeriodSeconds": termination_grace_seconds(cluster),
        "securityContext": workload.pod_security_context(),
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
    }
    spread = worker.topology_spread
    if spread.enabled:
        pod_spec["topologySpreadConstraints"] = [
            {
                "maxSkew": spread.max_skew,
                "topologyKey": spread.topology_key,
                "whenUnsatisfiable": spread.when_unsatisfiable,
                "labelSelector": {"matchLabels": meta.selector_labels(cluster, meta.WORKER)},
            }
        ]
    workload.apply_scheduling(pod_spec, worker.scheduling)
    template_meta: dict[str, Any] = {"labels": meta.labels(cluster, meta.WORKER)}
    if not inline_settings:
        config_hash = meta.content_hash(environment.plain)
        template_meta["annotations"] = {meta.CONFIG_HASH_ANNOTATION: config_hash}
    if secrets_hash is not None:
        template_meta.setdefault("annotations", {})[secrets.SECRETS_HASH_ANNOTATION] = secrets_hash
    return {"metadata": template_meta, "spec": pod_spec}


def revision(cluster: ResonanceCluster, *, secrets_hash: str | None = None) -> str:
    """The revision the spec (and the Secrets' digest) asks for: a hash of the worker Pod template
    (settings inlined)."""
    template = pod_template(cluster, inline_settings=True, secrets_hash=secrets_hash)
    return meta.content_hash(template)[:REVISION_LENGTH]


def deployment(cluster: ResonanceCluster, *, secrets_hash: str | None = None) -> dict[str, Any]:
    """The one worker Deployment of the ``rolling`` strategy."""
    worker = cluster.spec.worker
    rolling = cluster.spec.rollout.rolling
    spec: dict[str, Any] = {
        "selector": {"matchLabels": meta.selector_labels(cluster, meta.WORKER)},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {
                "maxSurge": meta.int_or_string(rolling.max_surge),
                "maxUnavailable": meta.int_or_string(rolling.max_unavailable),
            },
        },
        "template": pod_template(cluster, secrets_hash=secrets_hash),
    }
    # With an HPA the replica count belongs to the HPA: leaving the field out of
    # the applied configuration gives up our ownership of it.
    if not worker.autoscaling.enabled:
        spec["replicas"] = worker.replicas
    return meta.with_spec_hash(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta.metadata(cluster, name(cluster), meta.WORKER),
            "spec": spec,
        }
    )


def service(
    cluster: ResonanceCluster, *, revision: str | None = None, service_name: str | None = None
) -> dict[str, Any]:
    """The worker Service: every worker Pod, or only those of ``revision``."""
    selector = meta.selector_labels(cluster, meta.WORKER)
    if revision is not None:
        selector[meta.REVISION_LABEL] = revision
    return meta.with_spec_hash(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta.metadata(cluster, service_name or name(cluster), meta.WORKER),
            "spec": {
                "type": "ClusterIP",
                "selector": selector,
                "ports": [
                    {
                        "name": HTTP_PORT_NAME,
                        "port": SERVICE_PORT,
                        "targetPort": HTTP_PORT_NAME,
                        "protocol": "TCP",
                    }
                ],
            },
        }
    )


def nginx_ingress(cluster: ResonanceCluster) -> bool:
    """Whether the Ingress is served by ingress-nginx (which understands canary Ingresses)."""
    spec = cluster.spec.ingress
    return (
        spec.enabled and spec.host is not None and spec.class_name is not None and "nginx" in spec.class_name
    )


def ingress(
    cluster: ResonanceCluster,
    *,
    ingress_name: str | None = None,
    service_name: str | None = None,
    extra_annotations: dict[str, str] | None = None,
) -> dict[str, Any] | None:
    spec = cluster.spec.ingress
    if not spec.enabled or spec.host is None:
        return None
    annotations: dict[str, str] = {}
    if nginx_ingress(cluster):
        annotations.update(NGINX_WEBSOCKET_ANNOTATIONS)
        # A request body (the HTTP-streaming and server API transports) as large as the worker's largest
        # message, so the proxy refuses with 413 what the worker would refuse anyway, and nothing less.
        annotations[NGINX_BODY_SIZE] = str(cluster.spec.worker.limits.message_bytes)
    annotations.update(spec.annotations)
    annotations.update(extra_annotations or {})
    body: dict[str, Any] = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": meta.metadata(cluster, ingress_name or cluster.name, meta.WORKER, annotations),
        "spec": {
            "rules": [
                {
                    "host": spec.host,
                    "http": {
                        "paths": [
                            {
                                "path": spec.path,
                                "pathType": "Prefix",
                                "backend": {
                                    "service": {
                                        "name": service_name or name(cluster),
                                        "port": {"name": HTTP_PORT_NAME},
                                    }
                                },
                            }
                        ]
                    },
                }
            ]
        },
    }
    if spec.class_name is not None:
        body["spec"]["ingressClassName"] = spec.class_name
    if spec.tls is not None:
        body["spec"]["tls"] = [{"hosts": [spec.host], "secretName": spec.tls.secret_name}]
    return meta.with_spec_hash(body)


def horizontal_pod_autoscaler(
    cluster: ResonanceCluster,
    *,
    target: str | None = None,
    hpa_name: str | None = None,
    replica_range: tuple[int, int] | None = None,
) -> dict[str, Any] | None:
    """The worker HPA; during a rollout one per revision Deployment (``target``) with its share
    of the range (``replica_range``)."""
    autoscaling = cluster.spec.worker.autoscaling
    if not autoscaling.enabled:
        return None
    min_replicas, max_replicas = replica_range or (autoscaling.min_replicas, autoscaling.max_replicas)
    metrics: list[dict[str, Any]] = [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {
                    "type": "Utilization",
                    "averageUtilization": autoscaling.target_cpu_utilization_percentage,
                },
            },
        }
    ]
    if autoscaling.target_connections_per_pod is not None:
        # Served by a custom-metrics adapter (e.g. prometheus-adapter) from the
        # workers' resonance_connections gauge.
        metrics.append(
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": "resonance_connections"},
                    "target": {
                        "type": "AverageValue",
                        "averageValue": str(autoscaling.target_connections_per_pod),
                    },
                },
            }
        )
    return meta.with_spec_hash(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": meta.metadata(cluster, hpa_name or name(cluster), meta.WORKER),
            "spec": {
                "scaleTargetRef": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": target or name(cluster),
                },
                "minReplicas": min_replicas,
                "maxReplicas": max_replicas,
                "metrics": metrics,
                "behavior": scale_down_slowly(),
            },
        }
    )


def pod_disruption_budget(cluster: ResonanceCluster) -> dict[str, Any] | None:
    pdb = cluster.spec.pod_disruption_budget
    if not pdb.enabled:
        return None
    spec: dict[str, Any] = {"selector": {"matchLabels": meta.selector_labels(cluster, meta.WORKER)}}
    if pdb.min_available is not None:
        spec["minAvailable"] = meta.int_or_string(pdb.min_available)
    else:
        spec["maxUnavailable"] = meta.int_or_string(pdb.max_unavailable or "1")
    return meta.with_spec_hash(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": meta.metadata(cluster, name(cluster), meta.WORKER),
            "spec": spec,
        }
    )


# Pod labels copied onto every scraped series: which cluster and which revision a worker belongs to
# (as resonance_liminal_dev_cluster and resonance_liminal_dev_revision), for dashboards, alerts, KEDA
# and the Prometheus source of rollout analysis.
MONITOR_POD_LABELS = (meta.CLUSTER_LABEL, meta.REVISION_LABEL)


def service_monitor(cluster: ResonanceCluster, *, crd_present: bool) -> dict[str, Any] | None:
    """A ServiceMonitor over the worker Services. During a replica-ratio canary a canary Pod is behind
    both the worker and the canary Service, so it is scraped twice: prefer :func:`pod_monitor`."""
    monitor = cluster.spec.observability.service_monitor
    if not monitor.enabled or not crd_present:
        return None
    endpoint = {"port": HTTP_PORT_NAME, "path": "/metrics", "interval": monitor.interval}
    return _monitor(cluster, "ServiceMonitor", monitor.labels, "endpoints", endpoint)


def pod_monitor(cluster: ResonanceCluster) -> dict[str, Any] | None:
    """A PodMonitor selecting the worker Pods of every revision: each Pod is one target, labelled
    with its cluster and revision (created only when the CRD is served: ``desired/children.py``)."""
    monitor = cluster.spec.observability.pod_monitor
    if not monitor.enabled:
        return None
    endpoint = {
        "port": HTTP_PORT_NAME,
        "path": cluster.spec.rollout.metrics_path,
        "interval": monitor.interval,
    }
    return _monitor(cluster, "PodMonitor", monitor.labels, "podMetricsEndpoints", endpoint)


def _monitor(
    cluster: ResonanceCluster, kind: str, labels: Mapping[str, str], endpoints: str, endpoint: dict[str, Any]
) -> dict[str, Any]:
    """A Prometheus Operator monitor of the worker Pods (their cluster and revision as target labels)."""
    body_meta = meta.metadata(cluster, name(cluster), meta.WORKER)
    body_meta["labels"].update(labels)
    return meta.with_spec_hash(
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": kind,
            "metadata": body_meta,
            "spec": {
                "selector": {"matchLabels": meta.selector_labels(cluster, meta.WORKER)},
                endpoints: [endpoint],
                "podTargetLabels": list(MONITOR_POD_LABELS),
            },
        }
    )


def websocket_endpoint(cluster: ResonanceCluster) -> str:
    """The URL clients connect to: through the Ingress when there is one, else in-cluster."""
    ingress_spec = cluster.spec.ingress
    if ingress_spec.enabled and ingress_spec.host is not None:
        scheme = "wss" if ingress_spec.tls is not None else "ws"
        prefix = ingress_spec.path.rstrip("/")
        return f"{scheme}://{ingress_spec.host}{prefix}{WEBSOCKET_PATH}"
    return f"ws://{name(cluster)}.{cluster.namespace}.svc:{SERVICE_PORT}{WEBSOCKET_PATH}"
