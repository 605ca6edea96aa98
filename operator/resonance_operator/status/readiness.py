"""How ready each component is, read from its live workload (pure).

The conditions (:mod:`~resonance_operator.status.ready`, ``progressing``,
``degraded``) are judged on these numbers; the rollout pass uses
:func:`revision_readiness` for the revision Deployments of a canary or blue-green.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from resonance_operator.api.spec import ResonanceCluster

Body = Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class ComponentReadiness:
    ready: bool
    message: str


@dataclasses.dataclass(frozen=True)
class WorkerReadiness:
    desired: int
    ready: int
    updated: int
    current: int
    rolled_out: bool
    deadline_exceeded: bool

    @property
    def ready_all(self) -> bool:
        """Every desired worker runs the newest template and is ready: a rollout is finished."""
        return self.rolled_out and self.ready >= self.desired and self.updated >= self.desired

    @property
    def serving(self) -> bool:
        """As many workers are ready as are desired, whichever template they run (a rollout in
        progress on ready workers still serves)."""
        return self.ready >= self.desired

    @property
    def display(self) -> str:
        return f"{self.ready}/{self.desired}"


def _generation_observed(body: Body) -> bool:
    generation = body.get("metadata", {}).get("generation", 0)
    return int(body.get("status", {}).get("observedGeneration", 0)) >= int(generation)


def revision_readiness(
    cluster: ResonanceCluster,
    deployments: Sequence[Body | None],
    *,
    desired_revision: Body | None,
    settled: bool,
) -> WorkerReadiness:
    """Worker readiness across the revision Deployments that take new connections."""
    live = [d for d in deployments if d is not None]
    autoscaled = cluster.spec.worker.autoscaling.enabled
    desired = (
        sum(int(d.get("spec", {}).get("replicas", 0)) for d in live)
        if autoscaled and live
        else cluster.spec.worker.replicas
    )
    status = [d.get("status", {}) for d in live]
    ready = sum(int(s.get("readyReplicas", 0)) for s in status)
    current = sum(int(s.get("replicas", 0)) for s in status)
    updated = (
        0 if desired_revision is None else int(desired_revision.get("status", {}).get("readyReplicas", 0))
    )
    deadline_exceeded = any(
        c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded"
        for s in status
        for c in s.get("conditions", [])
    )
    rolled_out = settled and all(_generation_observed(d) for d in live)
    return WorkerReadiness(desired, ready, max(updated, 0), current, rolled_out, deadline_exceeded)


def worker_readiness(cluster: ResonanceCluster, deployment: Body | None) -> WorkerReadiness:
    autoscaled = cluster.spec.worker.autoscaling.enabled
    if deployment is None:
        desired = cluster.spec.worker.autoscaling.min_replicas if autoscaled else cluster.spec.worker.replicas
        return WorkerReadiness(desired, 0, 0, 0, rolled_out=False, deadline_exceeded=False)
    status = deployment.get("status", {})
    live_desired = int(deployment.get("spec", {}).get("replicas", 1))
    desired = live_desired if autoscaled else cluster.spec.worker.replicas
    current = int(status.get("replicas", 0))
    updated = int(status.get("updatedReplicas", 0))
    rolled_out = _generation_observed(deployment) and live_desired == desired and current == updated
    deadline_exceeded = any(
        c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded"
        for c in status.get("conditions", [])
    )
    return WorkerReadiness(
        desired=desired,
        ready=int(status.get("readyReplicas", 0)),
        updated=updated,
        current=current,
        rolled_out=rolled_out,
        deadline_exceeded=deadline_exceeded,
    )


def stateful_readiness(name: str, stateful_set: Body | None) -> ComponentReadiness:
    if stateful_set is None:
        return ComponentReadiness(False, f"{name} is not created yet")
    status = stateful_set.get("status", {})
    if not _generation_observed(stateful_set) or status.get("currentRevision") != status.get(
        "updateRevision"
    ):
        return ComponentReadiness(False, f"{name} is updating")
    if int(status.get("readyReplicas", 0)) < int(stateful_set.get("spec", {}).get("replicas", 1)):
        return ComponentReadiness(False, f"{name} pod is not ready")
    return ComponentReadiness(True, f"{name} is ready")
