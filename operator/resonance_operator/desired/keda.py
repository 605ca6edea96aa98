"""The KEDA ``ScaledObject`` that scales the workers on connections per pod (pure).

``autoscaling.targetConnectionsPerPod`` needs the workers' ``resonance_connections`` gauge as a scaling
metric. Where KEDA is installed (its ``keda.sh/v1alpha1`` ScaledObject CRD is served) the operator
applies a ScaledObject instead of its own HPA: a ``prometheus`` trigger with ``metricType: AverageValue``
and ``threshold`` = the target (KEDA's HPA computes ``ceil(sum ÷ threshold)`` replicas, exactly "this many
connections per pod"), a ``cpu`` trigger carrying ``targetCPUUtilizationPercentage``, the same replica
range and the same slow scale-down behaviour. KEDA's HPA keeps the operator's HPA name and
``scaledobject.keda.sh/transfer-hpa-ownership`` lets KEDA take over an HPA the operator made before, so
the two never fight over the Deployment (``children.py`` leaves that HPA to KEDA: not applied, not
pruned). Where KEDA is not served the operator keeps its CPU HPA and the ``Autoscaling`` condition says
the connections target needs KEDA (``status/autoscaling.py``).
"""

from __future__ import annotations

from typing import Any

from resonance_operator.api.spec import ResonanceCluster
from resonance_operator.desired import meta, worker

TRANSFER_HPA_OWNERSHIP = "scaledobject.keda.sh/transfer-hpa-ownership"
CONNECTIONS_METRIC = "resonance_connections"


def by_connections(cluster: ResonanceCluster) -> bool:
    """Whether the spec asks to scale on connections per pod (what needs KEDA)."""
    autoscaling = cluster.spec.worker.autoscaling
    return autoscaling.enabled and autoscaling.target_connections_per_pod is not None


def connections_query(cluster: ResonanceCluster) -> str:
    """The cluster's open connections, summed over its workers' series (the PodMonitor and the
    ServiceMonitor both copy the cluster label onto every series, as ``resonance_liminal_dev_cluster``)."""
    label = meta.CLUSTER_LABEL.replace(".", "_").replace("/", "_").replace("-", "_")
    return f'sum({CONNECTIONS_METRIC}{{namespace="{cluster.namespace}", {label}="{cluster.name}"}})'


def scaled_object(
    cluster: ResonanceCluster,
    *,
    target: str | None = None,
    replica_range: tuple[int, int] | None = None,
) -> dict[str, Any] | None:
    """The worker ScaledObject; during a canary / blue-green rollout it scales the stable revision's
    Deployment (``target``) within its share of the range (``replica_range``)."""
    if not by_connections(cluster):
        return None
    autoscaling = cluster.spec.worker.autoscaling
    min_replicas, max_replicas = replica_range or (autoscaling.min_replicas, autoscaling.max_replicas)
    hpa_name = worker.name(cluster)
    return meta.with_spec_hash(
        {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": meta.metadata(
                cluster, hpa_name, meta.WORKER, annotations={TRANSFER_HPA_OWNERSHIP: "true"}
            ),
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target or hpa_name},
                "minReplicaCount": min_replicas,
                "maxReplicaCount": max_replicas,
                "advanced": {
                    "horizontalPodAutoscalerConfig": {
                        "name": hpa_name,
                        "behavior": worker.scale_down_slowly(),
                    }
                },
                "triggers": [
                    {
                        "type": "prometheus",
                        "name": "connections",
                        "metricType": "AverageValue",
                        "metadata": {
                            "serverAddress": autoscaling.prometheus_address,
                            "query": connections_query(cluster),
                            "threshold": str(autoscaling.target_connections_per_pod),
                        },
                    },
                    {
                        "type": "cpu",
                        "metricType": "Utilization",
                        "metadata": {"value": str(autoscaling.target_cpu_utilization_percentage)},
                    },
                ],
            },
        }
    )
