"""What the conditions are judged on, gathered once from the observation (pure).

:func:`gather` reads the live children (or the rollout pass's view of the
revision Deployments) into :class:`Facts`; each condition module
(:mod:`~resonance_operator.status.ready`, :mod:`~resonance_operator.status.progressing`,
:mod:`~resonance_operator.status.degraded`) then judges one condition from these
facts alone. A new fact a condition needs is added here, once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from resonance_operator.api.conditions import DegradedReason, ProgressingReason, Reason
from resonance_operator.api.observed import ChildKey, Observed
from resonance_operator.api.spec import Autoscaling, Neo4jMode, ResonanceCluster
from resonance_operator.desired import meta, worker
from resonance_operator.status.readiness import WorkerReadiness, stateful_readiness, worker_readiness

_WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet"})


@dataclasses.dataclass(frozen=True)
class RolloutView:
    """What the rollout pass found, for the status (canary and blue-green set ``workers``)."""

    status: Mapping[str, Any]
    """``status.rollout``."""
    progressing: bool
    reason: ProgressingReason
    message: str
    degraded: DegradedReason | None = None
    workers: WorkerReadiness | None = None
    """Readiness over the revisions that take traffic, instead of the rolling Deployment's."""


@dataclasses.dataclass(frozen=True)
class Facts:
    """Everything the three conditions are judged on."""

    workers: WorkerReadiness
    workers_exist: bool
    """The worker Deployment (or, during a canary / blue-green, a revision's Pods) exists."""
    components: Mapping[str, Any]
    """``status.components``: workers, Redis and Neo4j as reported."""
    not_ready: tuple[tuple[Reason, str], ...]
    """Why the cluster is not ready, most important first (empty when it is)."""
    invalid: tuple[str, ...] = ()
    """Semantic errors of the spec (nothing was applied)."""
    apply_error: str | None = None
    workloads_applied: bool = False
    """A Deployment or StatefulSet was written in this reconcile (its rollout has only begun)."""
    rollout: RolloutView | None = None
    monitors: tuple[str, ...] = ()
    """The monitor kinds the spec asks for (``PodMonitor``, ``ServiceMonitor``)."""
    unserved: tuple[str, ...] = ()
    """Those of them whose CRD the cluster does not serve (nothing was created for them)."""
    withheld: tuple[str, ...] = ()
    """Generated Secrets deleted while workloads run, not generated again (``desired/secrets.py``)."""
    autoscaling: Autoscaling | None = None
    """``spec.worker.autoscaling`` while enabled."""
    keda_served: bool = False
    """KEDA's ScaledObject is served (the connections target acts through it)."""

    @property
    def not_ready_message(self) -> str:
        return "; ".join(message for _, message in self.not_ready)

    @property
    def rollout_reported(self) -> bool:
        """A canary or blue-green pass reported the workers (their readiness is the revisions')."""
        return self.rollout is not None and self.rollout.workers is not None


def _apps(kind: str, name: str) -> ChildKey:
    return ChildKey("apps/v1", kind, name)


def gather(
    cluster: ResonanceCluster,
    observed: Observed,
    *,
    invalid: Sequence[str] = (),
    apply_error: str | None = None,
    applied: Sequence[ChildKey] = (),
    rollout: RolloutView | None = None,
    unserved: Sequence[str] = (),
    previous: Mapping[str, Any] | None = None,
    withheld: Sequence[str] = (),
    keda_served: bool = False,
) -> Facts:
    """The facts of one reconcile: what was observed, what the spec lacked, what was applied.

    ``unserved`` names the kinds the spec asks for whose CRD the cluster does not serve;
    ``previous`` is the status this one replaces.
    """
    deployment_key = _apps("Deployment", worker.name(cluster))
    deployment = observed.child(deployment_key)
    workers = worker_readiness(cluster, deployment)
    workers_exist = deployment is not None
    if rollout is not None and rollout.workers is not None:
        workers = rollout.workers
        # A canary / blue-green cluster has revision Deployments instead of the rolling one.
        workers_exist = bool(workers.current or workers.ready)
    if deployment_key in applied:
        # What was observed predates the change just applied: the rollout has only begun.
        workers = dataclasses.replace(workers, rolled_out=False)

    components: dict[str, Any] = {
        "workers": {"desired": workers.desired, "ready": workers.ready, "updated": workers.updated}
    }
    not_ready: list[tuple[Reason, str]] = []
    if not workers.serving and not _scaling_up(workers, previous):
        not_ready.append((Reason.WORKERS_NOT_READY, f"workers ready {workers.display}"))

    if cluster.spec.redis.external is None:
        redis = stateful_readiness(
            "Redis", observed.child(_apps("StatefulSet", meta.child_name(cluster, meta.REDIS)))
        )
        components["redis"] = {"mode": "managed", "ready": redis.ready}
        if not redis.ready:
            not_ready.append((Reason.REDIS_NOT_READY, redis.message))
    else:
        components["redis"] = {"mode": "external", "ready": True}

    mode = cluster.spec.neo4j.mode
    if mode is Neo4jMode.MANAGED:
        neo4j = stateful_readiness(
            "Neo4j", observed.child(_apps("StatefulSet", meta.child_name(cluster, meta.NEO4J)))
        )
        components["neo4j"] = {"mode": mode.value, "ready": neo4j.ready}
        if not neo4j.ready:
            not_ready.append((Reason.NEO4J_NOT_READY, neo4j.message))
    else:
        components["neo4j"] = {"mode": mode.value, "ready": mode is Neo4jMode.EXTERNAL}

    return Facts(
        workers=workers,
        workers_exist=workers_exist,
        components=components,
        not_ready=tuple(not_ready),
        invalid=tuple(invalid),
        apply_error=apply_error,
        workloads_applied=any(key.kind in _WORKLOAD_KINDS for key in applied),
        rollout=rollout,
        monitors=requested_monitors(cluster),
        unserved=tuple(unserved),
        withheld=tuple(withheld),
        autoscaling=cluster.spec.worker.autoscaling if cluster.spec.worker.autoscaling.enabled else None,
        keda_served=keda_served,
    )


def _scaling_up(workers: WorkerReadiness, previous: Mapping[str, Any] | None) -> bool:
    """More workers are wanted while none of those serving was lost: a cluster that was Ready with
    ``n`` ready workers still serves with ``n`` or more while new ones start (no flip to not ready,
    no Warning Event on a scale-up; Progressing says ``WorkersScaling``)."""
    if previous is None or workers.ready == 0:
        return False
    was_ready = any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in previous.get("conditions") or []
    )
    before = previous.get("readyReplicas")
    return was_ready and before is not None and workers.ready >= int(before)


def requested_monitors(cluster: ResonanceCluster) -> tuple[str, ...]:
    """The Prometheus Operator kinds ``spec.observability`` asks for."""
    observability = cluster.spec.observability
    wanted = (
        ("PodMonitor", observability.pod_monitor.enabled),
        ("ServiceMonitor", observability.service_monitor.enabled),
    )
    return tuple(kind for kind, enabled in wanted if enabled)
