"""Compute a ``ResonanceCluster`` status from the observed children."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from resonance_operator.api.conditions import (
    ConditionStatus,
    ConditionType,
    DegradedReason,
    EventReason,
    EventType,
    ProgressingReason,
    Reason,
)
from resonance_operator.api.observed import ChildKey, Observed
from resonance_operator.api.spec import Neo4jMode, ResonanceCluster
from resonance_operator.desired import meta, worker
from resonance_operator.status import conditions

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
        return self.rolled_out and self.ready >= self.desired and self.updated >= self.desired

    @property
    def display(self) -> str:
        return f"{self.ready}/{self.desired}"


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


@dataclasses.dataclass(frozen=True)
class Transition:
    """An Event worth posting."""

    type: EventType
    reason: EventReason
    message: str


def _generation_observed(body: Body) -> bool:
    generation = body.get("metadata", {}).get("generation", 0)
    return int(body.get("status", {}).get("observedGeneration", 0)) >= int(generation)


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


def _key(kind: str, name: str) -> ChildKey:
    api_version = "apps/v1"
    return ChildKey(api_version, kind, name)


def compute(
    cluster: ResonanceCluster,
    observed: Observed,
    *,
    now: str,
    invalid: Sequence[str] = (),
    apply_error: str | None = None,
    applied: Sequence[ChildKey] = (),
    rollout: RolloutView | None = None,
) -> dict[str, Any]:
    """The full new status (the caller compares it with the old one before writing)."""
    generation = cluster.metadata.generation
    previous: list[Mapping[str, Any]] = list(cluster.status.get("conditions") or [])
    deployment_key = _key("Deployment", worker.name(cluster))
    deployment = observed.child(deployment_key)
    workers = worker_readiness(cluster, deployment)
    if rollout is not None and rollout.workers is not None:
        workers = rollout.workers
        # A canary / blue-green cluster has revision Deployments instead of the rolling one.
        deployment = {} if workers.current or workers.ready else None
    if deployment_key in applied:
        # What was observed predates the change just applied: the rollout has only begun.
        workers = dataclasses.replace(workers, rolled_out=False)

    components: dict[str, Any] = {
        "workers": {"desired": workers.desired, "ready": workers.ready, "updated": workers.updated}
    }
    not_ready: list[tuple[Reason, str]] = []
    if not workers.ready_all:
        not_ready.append((Reason.WORKERS_NOT_READY, f"workers ready {workers.display}"))

    if cluster.spec.redis.external is None:
        redis = stateful_readiness(
            "Redis", observed.child(_key("StatefulSet", meta.child_name(cluster, meta.REDIS)))
        )
        components["redis"] = {"mode": "managed", "ready": redis.ready}
        if not redis.ready:
            not_ready.append((Reason.REDIS_NOT_READY, redis.message))
    else:
        components["redis"] = {"mode": "external", "ready": True}

    mode = cluster.spec.neo4j.mode
    if mode is Neo4jMode.MANAGED:
        neo4j = stateful_readiness(
            "Neo4j", observed.child(_key("StatefulSet", meta.child_name(cluster, meta.NEO4J)))
        )
        components["neo4j"] = {"mode": mode.value, "ready": neo4j.ready}
        if not neo4j.ready:
            not_ready.append((Reason.NEO4J_NOT_READY, neo4j.message))
    else:
        components["neo4j"] = {"mode": mode.value, "ready": mode is Neo4jMode.EXTERNAL}

    def condition(
        type_: ConditionType,
        status: ConditionStatus,
        reason: Reason | ProgressingReason | DegradedReason,
        message: str,
    ) -> dict[str, Any]:
        return conditions.make(previous, type_, status, reason, message, generation=generation, now=now)

    if not_ready:
        reason, _ = not_ready[0]
        ready = condition(
            ConditionType.READY, ConditionStatus.FALSE, reason, "; ".join(message for _, message in not_ready)
        )
    else:
        ready = condition(
            ConditionType.READY, ConditionStatus.TRUE, Reason.ALL_COMPONENTS_READY, "all components are ready"
        )

    if invalid:
        degraded = condition(
            ConditionType.DEGRADED, ConditionStatus.TRUE, Reason.INVALID_SPEC, "; ".join(invalid)
        )
    elif apply_error is not None:
        degraded = condition(ConditionType.DEGRADED, ConditionStatus.TRUE, Reason.APPLY_FAILED, apply_error)
    elif rollout is not None and rollout.degraded is not None:
        # The message of the decision that degraded the rollout says why; later passes only drain.
        before = conditions.find(previous, ConditionType.DEGRADED) or {}
        kept = before.get("status") == "True" and before.get("reason") == rollout.degraded.value
        message = str(before["message"]) if kept else rollout.message
        degraded = condition(ConditionType.DEGRADED, ConditionStatus.TRUE, rollout.degraded, message)
    elif workers.deadline_exceeded:
        degraded = condition(
            ConditionType.DEGRADED,
            ConditionStatus.TRUE,
            Reason.PROGRESS_DEADLINE_EXCEEDED,
            "the worker Deployment exceeded its progress deadline",
        )
    else:
        degraded = condition(
            ConditionType.DEGRADED, ConditionStatus.FALSE, Reason.AS_EXPECTED, "no problems found"
        )

    workload_kinds = {"Deployment", "StatefulSet"}
    rollout_reported = rollout is not None and rollout.workers is not None
    if rollout is not None and rollout_reported and not invalid and rollout.progressing:
        progressing = condition(
            ConditionType.PROGRESSING, ConditionStatus.TRUE, rollout.reason, rollout.message
        )
    elif (
        rollout is not None
        and rollout_reported
        and not invalid
        and rollout.reason is ProgressingReason.ROLLED_BACK
    ):
        progressing = condition(
            ConditionType.PROGRESSING, ConditionStatus.FALSE, rollout.reason, rollout.message
        )
    elif deployment is None and not invalid:
        progressing = condition(
            ConditionType.PROGRESSING,
            ConditionStatus.TRUE,
            Reason.CREATING,
            "creating the cluster's children",
        )
    elif any(key.kind in workload_kinds for key in applied) or not workers.rolled_out:
        progressing = condition(
            ConditionType.PROGRESSING,
            ConditionStatus.TRUE,
            Reason.WORKERS_UPDATING,
            f"rolling out workers: updated {workers.updated}/{workers.desired}",
        )
    elif workers.ready < workers.desired:
        progressing = condition(
            ConditionType.PROGRESSING,
            ConditionStatus.TRUE,
            Reason.WORKERS_SCALING,
            f"workers ready {workers.display}",
        )
    elif not_ready:
        progressing = condition(
            ConditionType.PROGRESSING, ConditionStatus.TRUE, Reason.COMPONENTS_STARTING, ready["message"]
        )
    else:
        progressing = condition(
            ConditionType.PROGRESSING,
            ConditionStatus.FALSE,
            Reason.RECONCILED,
            "the cluster matches its spec",
        )

    return {
        "observedGeneration": generation,
        "conditions": [ready, progressing, degraded],
        "replicas": workers.current,
        "readyReplicas": workers.ready,
        "selector": meta.selector_string(cluster, meta.WORKER),
        "workers": workers.display,
        "endpoint": worker.websocket_endpoint(cluster),
        "components": components,
        "rollout": dict(rollout.status)
        if rollout is not None
        else {"strategy": cluster.spec.rollout.strategy.value},
    }


def _without_nulls(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


def changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether writing ``new`` would change anything (``lastTransitionTime`` is kept when unchanged).

    A ``None`` in ``new`` removes the field (JSON merge patch), so it matches an absent one.
    """
    return any(_without_nulls(old.get(key)) != _without_nulls(value) for key, value in new.items())


def transitions(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Transition]:
    """Events worth posting: Ready and Degraded flipping."""
    before: Sequence[Mapping[str, Any]] = old.get("conditions") or []
    after: Sequence[Mapping[str, Any]] = new.get("conditions") or []
    found: list[Transition] = []
    ready_after = conditions.find(after, ConditionType.READY)
    was_ready = conditions.is_true(before, ConditionType.READY)
    if ready_after is not None and conditions.is_true(after, ConditionType.READY) != was_ready:
        if was_ready:
            found.append(
                Transition(EventType.WARNING, EventReason.BECAME_NOT_READY, str(ready_after["message"]))
            )
        else:
            found.append(Transition(EventType.NORMAL, EventReason.BECAME_READY, str(ready_after["message"])))
    degraded_after = conditions.find(after, ConditionType.DEGRADED)
    was_degraded = conditions.is_true(before, ConditionType.DEGRADED)
    is_degraded = conditions.is_true(after, ConditionType.DEGRADED)
    if (
        degraded_after is not None
        and is_degraded
        and (
            not was_degraded
            or (conditions.find(before, ConditionType.DEGRADED) or {}).get("message")
            != degraded_after["message"]
        )
    ):
        found.append(
            Transition(EventType.WARNING, EventReason.BECAME_DEGRADED, str(degraded_after["message"]))
        )
    elif was_degraded and not is_degraded:
        found.append(Transition(EventType.NORMAL, EventReason.RECOVERED, "the cluster is no longer degraded"))
    return found
