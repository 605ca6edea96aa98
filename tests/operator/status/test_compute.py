from __future__ import annotations

import dataclasses
from typing import Any

from resonance_operator.api.conditions import EventReason, EventType
from resonance_operator.api.observed import ChildKey, Observed
from resonance_operator.api.spec import ResonanceCluster
from resonance_operator.status import compute
from resonance_operator.status.facts import RolloutView
from resonance_operator.status.readiness import WorkerReadiness, revision_readiness

from tests.operator import fixtures

DEPLOYMENT = ChildKey("apps/v1", "Deployment", "demo-worker")
REDIS = ChildKey("apps/v1", "StatefulSet", "demo-redis")
NEO4J = ChildKey("apps/v1", "StatefulSet", "demo-neo4j")


def deployment(
    replicas: int = 2, ready: int = 2, updated: int = 2, current: int | None = None, **extra: Any
) -> dict[str, Any]:
    status = {
        "observedGeneration": extra.pop("observed", 4),
        "replicas": replicas if current is None else current,
        "readyReplicas": ready,
        "updatedReplicas": updated,
        **extra,
    }
    return {"metadata": {"generation": 4}, "spec": {"replicas": replicas}, "status": status}


def stateful_set(ready: int = 1, *, updating: bool = False, observed: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"generation": 1},
        "spec": {"replicas": 1},
        "status": {
            "observedGeneration": observed,
            "readyReplicas": ready,
            "currentRevision": "a",
            "updateRevision": "b" if updating else "a",
        },
    }


def _conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def _compute(cluster: ResonanceCluster, children: dict[ChildKey, Any], **kwargs: Any) -> dict[str, Any]:
    return compute.compute(cluster, Observed(children=children), now="2026-01-01T00:00:00Z", **kwargs)


def test_nothing_created_yet() -> None:
    status = _compute(fixtures.cluster(), {})
    assert _conditions(status) == {
        "Ready": ("False", "WorkersNotReady"),
        "Progressing": ("True", "Creating"),
        "Degraded": ("False", "AsExpected"),
        "Monitoring": ("True", "NotRequested"),
    }
    assert status["observedGeneration"] == 3
    assert status["workers"] == "0/2"
    assert status["selector"] == "app.kubernetes.io/component=worker,resonance.liminal.dev/cluster=demo"
    assert status["endpoint"] == "ws://demo-worker.team-a.svc:80/connection/websocket"
    assert status["rollout"] == {"strategy": "rolling"}
    assert all(c["observedGeneration"] == 3 for c in status["conditions"])


def test_everything_ready() -> None:
    status = _compute(fixtures.cluster(), {DEPLOYMENT: deployment(), REDIS: stateful_set()})
    assert _conditions(status) == {
        "Ready": ("True", "AllComponentsReady"),
        "Progressing": ("False", "Reconciled"),
        "Degraded": ("False", "AsExpected"),
        "Monitoring": ("True", "NotRequested"),
    }
    assert status["components"] == {
        "workers": {"desired": 2, "ready": 2, "updated": 2},
        "redis": {"mode": "managed", "ready": True},
        "neo4j": {"mode": "disabled", "ready": False},
    }
    assert (status["replicas"], status["readyReplicas"]) == (2, 2)


def test_scaling_up_and_redis_states() -> None:
    scaling = _compute(fixtures.cluster(), {DEPLOYMENT: deployment(ready=1), REDIS: stateful_set()})
    assert _conditions(scaling)["Progressing"] == ("True", "WorkersScaling")
    assert _conditions(scaling)["Ready"] == ("False", "WorkersNotReady")
    for redis, message in [
        (stateful_set(ready=0), "Redis pod is not ready"),
        (stateful_set(updating=True), "Redis is updating"),
        (stateful_set(observed=0), "Redis is updating"),
        (None, "Redis is not created yet"),
    ]:
        children = {DEPLOYMENT: deployment()} | ({REDIS: redis} if redis is not None else {})
        status = _compute(fixtures.cluster(), children)
        ready = status["conditions"][0]
        assert (ready["reason"], ready["message"]) == ("RedisNotReady", message)
        assert _conditions(status)["Progressing"] == ("True", "ComponentsStarting")


def test_rolling_out_a_new_template() -> None:
    old_generation = _compute(fixtures.cluster(), {DEPLOYMENT: deployment(observed=3), REDIS: stateful_set()})
    assert _conditions(old_generation)["Progressing"] == ("True", "WorkersUpdating")
    surge = _compute(
        fixtures.cluster(), {DEPLOYMENT: deployment(updated=1, current=3), REDIS: stateful_set()}
    )
    # A rollout on ready workers: the cluster serves (Ready), Progressing says what is happening.
    assert _conditions(surge)["Progressing"] == ("True", "WorkersUpdating")
    assert _conditions(surge)["Ready"] == ("True", "AllComponentsReady")
    just_applied = _compute(
        fixtures.cluster(), {DEPLOYMENT: deployment(), REDIS: stateful_set()}, applied=[DEPLOYMENT]
    )
    assert _conditions(just_applied)["Progressing"] == ("True", "WorkersUpdating")
    assert _conditions(just_applied)["Ready"] == ("True", "AllComponentsReady")
    short = _compute(fixtures.cluster(), {DEPLOYMENT: deployment(ready=1, updated=1), REDIS: stateful_set()})
    assert _conditions(short)["Ready"] == ("False", "WorkersNotReady")
    rescaled = _compute(
        fixtures.cluster(fixtures.with_worker(replicas=5)), {DEPLOYMENT: deployment(), REDIS: stateful_set()}
    )
    assert _conditions(rescaled)["Ready"] == ("False", "WorkersNotReady")
    assert rescaled["workers"] == "2/5"


def test_a_scale_up_of_a_ready_cluster_stays_ready_without_a_warning() -> None:
    ready = _compute(fixtures.cluster(), {DEPLOYMENT: deployment(), REDIS: stateful_set()})
    children = {DEPLOYMENT: deployment(replicas=5, ready=2, updated=5, current=5), REDIS: stateful_set()}
    scaled = _compute(fixtures.cluster(fixtures.with_worker(replicas=5), status=ready), children)
    assert _conditions(scaled)["Ready"] == ("True", "AllComponentsReady")
    assert _conditions(scaled)["Progressing"] == ("True", "WorkersScaling")
    assert scaled["workers"] == "2/5"
    assert compute.transitions(ready, scaled) == []
    # Losing a serving worker while scaling is not a scale-up any more.
    children[DEPLOYMENT] = deployment(replicas=5, ready=1, updated=5, current=5)
    lost = _compute(fixtures.cluster(fixtures.with_worker(replicas=5), status=scaled), children)
    assert _conditions(lost)["Ready"] == ("False", "WorkersNotReady")
    assert [t.reason for t in compute.transitions(scaled, lost)] == [EventReason.BECAME_NOT_READY]


def test_autoscaled_workers_follow_the_live_replica_count() -> None:
    cluster = fixtures.cluster(fixtures.with_worker(autoscaling={"enabled": True, "minReplicas": 3}))
    assert _compute(cluster, {})["workers"] == "0/3"
    status = _compute(
        cluster, {DEPLOYMENT: deployment(replicas=6, ready=6, updated=6), REDIS: stateful_set()}
    )
    assert status["workers"] == "6/6"
    assert _conditions(status)["Ready"] == ("True", "AllComponentsReady")


def test_neo4j_managed_and_external() -> None:
    managed = fixtures.cluster({**fixtures.with_worker(), "neo4j": {"managed": {}}})
    waiting = _compute(managed, {DEPLOYMENT: deployment(), REDIS: stateful_set()})
    assert _conditions(waiting)["Ready"] == ("False", "Neo4jNotReady")
    ready = _compute(managed, {DEPLOYMENT: deployment(), REDIS: stateful_set(), NEO4J: stateful_set()})
    assert ready["components"]["neo4j"] == {"mode": "managed", "ready": True}
    external = fixtures.cluster(
        {
            **fixtures.with_worker(),
            "redis": {"external": {"url": "redis://r"}},
            "neo4j": {"external": {"uri": "bolt://g", "passwordSecretRef": {"name": "g"}}},
        }
    )
    status = _compute(external, {DEPLOYMENT: deployment()})
    assert _conditions(status)["Ready"] == ("True", "AllComponentsReady")
    assert status["components"]["redis"] == {"mode": "external", "ready": True}
    assert status["components"]["neo4j"] == {"mode": "external", "ready": True}


def test_degraded_reasons() -> None:
    children = {DEPLOYMENT: deployment(), REDIS: stateful_set()}
    invalid = _compute(fixtures.cluster(), children, invalid=["a is wrong", "b too"])
    degraded = invalid["conditions"][2]
    assert (degraded["status"], degraded["reason"], degraded["message"]) == (
        "True",
        "InvalidSpec",
        "a is wrong; b too",
    )
    invalid_new = _compute(fixtures.cluster(), {}, invalid=["bad"])
    assert _conditions(invalid_new)["Progressing"] == ("True", "WorkersUpdating")
    failed = _compute(fixtures.cluster(), children, apply_error="403 forbidden")
    assert _conditions(failed)["Degraded"] == ("True", "ApplyFailed")
    stuck = deployment(
        ready=1, conditions=[{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]
    )
    assert _conditions(_compute(fixtures.cluster(), {DEPLOYMENT: stuck}))["Degraded"] == (
        "True",
        "ProgressDeadlineExceeded",
    )


def test_changed_ignores_nothing_but_is_false_for_the_same_status() -> None:
    cluster = fixtures.cluster()
    children = {DEPLOYMENT: deployment(), REDIS: stateful_set()}
    first = _compute(cluster, children)
    again = compute.compute(
        fixtures.cluster(status=first), Observed(children=children), now="2026-01-01T00:05:00Z"
    )
    assert again == first  # lastTransitionTime kept: nothing to write
    assert not compute.changed(first, again)
    assert compute.changed({}, first)
    assert compute.changed({**first, "workers": "1/2"}, first)


def test_transitions_worth_an_event() -> None:
    children = {DEPLOYMENT: deployment(), REDIS: stateful_set()}
    not_ready = _compute(fixtures.cluster(), {})
    ready = _compute(fixtures.cluster(status=not_ready), children)
    assert [(t.type, t.reason) for t in compute.transitions(not_ready, ready)] == [
        (EventType.NORMAL, EventReason.BECAME_READY)
    ]
    assert [t.reason for t in compute.transitions(ready, not_ready)] == [EventReason.BECAME_NOT_READY]
    assert compute.transitions(ready, ready) == []
    degraded = _compute(fixtures.cluster(status=ready), children, invalid=["x"])
    assert [(t.type, t.reason, t.message) for t in compute.transitions(ready, degraded)] == [
        (EventType.WARNING, EventReason.BECAME_DEGRADED, "x")
    ]
    assert compute.transitions(degraded, degraded) == []
    other = _compute(fixtures.cluster(status=degraded), children, invalid=["y"])
    assert [t.reason for t in compute.transitions(degraded, other)] == [EventReason.BECAME_DEGRADED]
    assert [t.reason for t in compute.transitions(degraded, ready)] == [EventReason.RECOVERED]
    assert compute.transitions({}, {}) == []


def _view(reason: str, *, progressing: bool, degraded: str | None = None, **workers: Any) -> RolloutView:
    from resonance_operator.api.conditions import DegradedReason, ProgressingReason

    readiness = WorkerReadiness(
        desired=workers.get("desired", 2),
        ready=workers.get("ready", 2),
        updated=workers.get("updated", 2),
        current=workers.get("current", 2),
        rolled_out=workers.get("rolled_out", True),
        deadline_exceeded=False,
    )
    return RolloutView(
        {"strategy": "canary", "phase": reason, "drainingRevision": None},
        progressing,
        ProgressingReason(reason),
        f"rollout {reason}",
        None if degraded is None else DegradedReason(degraded),
        readiness,
    )


def test_a_rollout_sets_progressing_and_degraded() -> None:
    cluster = fixtures.cluster()
    paused = _compute(cluster, {REDIS: stateful_set()}, rollout=_view("RolloutPaused", progressing=True))
    assert _conditions(paused) == {
        "Ready": ("True", "AllComponentsReady"),
        "Progressing": ("True", "RolloutPaused"),
        "Degraded": ("False", "AsExpected"),
        "Monitoring": ("True", "NotRequested"),
    }
    assert paused["rollout"] == {"strategy": "canary", "phase": "RolloutPaused", "drainingRevision": None}
    rolled_back = _compute(
        cluster,
        {REDIS: stateful_set()},
        rollout=_view("RolledBack", progressing=False, degraded="AnalysisFailed"),
    )
    assert _conditions(rolled_back) == {
        "Ready": ("True", "AllComponentsReady"),
        "Progressing": ("False", "RolledBack"),
        "Degraded": ("True", "AnalysisFailed"),
        "Monitoring": ("True", "NotRequested"),
    }
    assert [c["message"] for c in rolled_back["conditions"]][1:3] == ["rollout RolledBack"] * 2
    later = compute.compute(
        fixtures.cluster(status=rolled_back),
        Observed(children={REDIS: stateful_set()}),
        now="2026-01-01T00:00:09Z",
        rollout=dataclasses.replace(
            _view("RolledBack", progressing=False, degraded="AnalysisFailed"), message="draining"
        ),
    )
    # Why it degraded stays in the condition while later passes only drain.
    assert [c["message"] for c in later["conditions"]][1:3] == ["draining", "rollout RolledBack"]
    done = _compute(cluster, {REDIS: stateful_set()}, rollout=_view("RolloutCompleted", progressing=False))
    assert _conditions(done)["Progressing"] == ("False", "Reconciled")
    creating = _compute(
        cluster,
        {},
        rollout=_view("RolloutCompleted", progressing=False, ready=0, current=0, rolled_out=False),
    )
    assert _conditions(creating)["Progressing"] == ("True", "Creating")


def test_revision_readiness_sums_the_revisions_that_take_traffic() -> None:
    stable, canary = deployment(replicas=1, ready=1), deployment(replicas=1, ready=0)
    readiness = revision_readiness(
        fixtures.cluster(), [stable, canary, None], desired_revision=canary, settled=False
    )
    assert (readiness.desired, readiness.ready, readiness.updated, readiness.current) == (2, 1, 0, 2)
    assert not readiness.rolled_out
    autoscaled = fixtures.cluster(fixtures.with_worker(autoscaling={"enabled": True}))
    late = deployment(
        replicas=3,
        ready=3,
        observed=3,
        conditions=[{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}],
    )
    scaled = revision_readiness(autoscaled, [late], desired_revision=None, settled=True)
    assert (scaled.desired, scaled.updated, scaled.rolled_out, scaled.deadline_exceeded) == (
        3,
        0,
        False,
        True,
    )


def test_changed_treats_null_as_absent() -> None:
    old = {"rollout": {"stableRevision": "a"}}
    assert not compute.changed(old, {"rollout": {"stableRevision": "a", "drainingRevision": None}})
    assert compute.changed(old, {"rollout": {"stableRevision": "b", "drainingRevision": None}})
