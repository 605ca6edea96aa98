"""The operator's own Prometheus metrics (kopf has none built in)."""

from __future__ import annotations

import dataclasses

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclasses.dataclass(frozen=True)
class OperatorMetrics:
    registry: CollectorRegistry
    reconciles: Counter
    reconcile_errors: Counter
    reconcile_duration: Histogram
    api_requests: Counter
    clusters_ready: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> OperatorMetrics:
        registry = registry or CollectorRegistry()
        return cls(
            registry=registry,
            reconciles=Counter(
                "resonance_operator_reconciles", "Reconciles by trigger.", ["trigger"], registry=registry
            ),
            reconcile_errors=Counter(
                "resonance_operator_reconcile_errors",
                "Reconciles that failed, by kind.",
                ["kind"],
                registry=registry,
            ),
            reconcile_duration=Histogram(
                "resonance_operator_reconcile_duration_seconds",
                "Duration of one reconcile.",
                buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
                registry=registry,
            ),
            api_requests=Counter(
                "resonance_operator_kube_requests",
                "Kubernetes API requests of the reconciler by verb and HTTP status.",
                ["verb", "code"],
                registry=registry,
            ),
            clusters_ready=Gauge(
                "resonance_operator_cluster_ready",
                "1 when a ResonanceCluster is Ready.",
                ["namespace", "name"],
                registry=registry,
            ),
        )

    def count_request(self, verb: str, code: int) -> None:
        self.api_requests.labels(verb=verb, code=str(code)).inc()
