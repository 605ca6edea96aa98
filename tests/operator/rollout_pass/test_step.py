"""The rollout pass's pure step (its I/O runs in e2e/operator/test_rollouts.py)."""

from __future__ import annotations

import base64
from typing import Any

from resonance_operator.api.conditions import EventReason, EventType, ProgressingReason
from resonance_operator.api.observed import ChildKey, Observed
from resonance_operator.api.spec import parse
from resonance_operator.desired import revisions, worker
from resonance_operator.probe.targets import DrainReport, PodTarget
from resonance_operator.rollout import decision as plan_decision
from resonance_operator.rollout import request as plan_request
from resonance_operator.rollout import state as plan_state
from resonance_operator.rollout_pass import step

from tests.operator import fixtures


def test_unknown_action_is_a_warning_and_no_request() -> None:
    notes: list[step.Note] = []
    annotations = {plan_request.ACTION_ANNOTATION: "yolo"}
    assert step._request(annotations, notes) == (None, True)
    assert notes[0][:2] == (EventType.WARNING, EventReason.INVALID_ROLLOUT_ACTION)
    assert "'yolo' is not one of promote" in notes[0][2]
    assert step._request({}, notes) == (None, False)
    promote = {plan_request.ACTION_ANNOTATION: "Promote"}
    assert step._request(promote, notes) == (plan_request.Request.PROMOTE, True)


def test_api_key_and_live_revisions_come_from_the_observation() -> None:
    cluster = fixtures.cluster()
    secret_key = ChildKey("v1", "Secret", "demo-worker-api")
    encoded = base64.b64encode(b"k3y").decode()
    assert step.api_key(Observed(), cluster) is None
    assert step.api_key(Observed(children={secret_key: {"data": {}}}), cluster) is None
    assert step.api_key(Observed(children={secret_key: {"data": {"key": encoded}}}), cluster) == "k3y"

    def deployment(name: str, revision: str | None) -> dict[str, Any]:
        labels = {} if revision is None else {"resonance.liminal.dev/revision": revision}
        return {"metadata": {"name": name}, "spec": {"selector": {"matchLabels": labels}}}

    children: dict[ChildKey, Any] = {
        ChildKey("apps/v1", "Deployment", "demo-worker-r1"): deployment("demo-worker-r1", "r1"),
        ChildKey("apps/v1", "Deployment", "demo-worker"): deployment("demo-worker", None),
        ChildKey("apps/v1", "Deployment", "someone-else"): deployment("someone-else", "r2"),
        ChildKey("apps/v1", "Deployment", "demo-worker-r3"): None,
        secret_key: {"data": {}},
    }
    assert list(step.live_revisions(cluster, Observed(children=children))) == ["r1"]


def test_an_invalid_pre_promotion_analysis_is_left_to_validation() -> None:
    cluster = fixtures.cluster(
        {
            **fixtures.with_worker(),
            "rollout": {
                "strategy": "blueGreen",
                "blueGreen": {"prePromotionAnalysis": {"intervalSeconds": 0}},
            },
        }
    )
    assert step._pre_promotion(cluster) is None
    fine = fixtures.cluster(
        {
            **fixtures.with_worker(),
            "rollout": {
                "strategy": "blueGreen",
                "blueGreen": {"prePromotionAnalysis": {"intervalSeconds": 2}},
            },
        }
    )
    analysis = step._pre_promotion(fine)
    assert analysis is not None and analysis.interval_seconds == 2


def test_scrapes_are_comparable_only_with_a_pod_of_each_revision_in_both_rounds() -> None:
    from resonance_operator.rollout.scrapes import Scrape

    def scrape(pod: str, revision: str) -> Scrape:
        return Scrape(pod, revision, 0.0, ())

    before = [scrape("s1", "stable"), scrape("c1", "canary")]
    assert step._comparable(before, [scrape("s1", "stable"), scrape("c1", "canary")], ("stable", "canary"))
    # The canary Pod was not answering at the baseline.
    assert not step._comparable(before[:1], before, ("stable", "canary"))
    assert not step._comparable(
        before, [scrape("c2", "canary"), scrape("s1", "stable")], ("stable", "canary")
    )


def test_measurements_need_a_comparable_baseline_and_give_up_as_inconclusive() -> None:
    from resonance_operator.api.conditions import ProgressingReason
    from resonance_operator.rollout.analysis import AnalysisRun, AnalysisSpec
    from resonance_operator.rollout.exposition import Sample
    from resonance_operator.rollout.scrapes import Scrape

    spec = AnalysisSpec.model_validate({"intervalSeconds": 5})
    state = plan_state.RolloutState(
        stable_revision="s", canary_revision="c", analysis=AnalysisRun(started_at=0.0)
    )

    def decision(action: plan_decision.ActionKind) -> plan_decision.Decision:
        reason = ProgressingReason.CANARY_STEP_PROGRESSING
        return plan_decision.Decision(action, state, reason, "", requeue_after=5.0, analysis=spec)

    def round_(at: float, *pods: tuple[str, str]) -> list[Scrape]:
        return [Scrape(pod, rev, at, (Sample("resonance_commands_total", (), at * 10),)) for pod, rev in pods]

    first = step.Memory()
    both = [("s1", "s"), ("c1", "c")]
    after, requeue, memory = step._analyse(
        decision(plan_decision.ActionKind.START_ANALYSIS), first, round_(1, *both), 1
    )
    assert first == step.Memory(), "the memory passed in is never changed"
    assert (after.analysis, requeue, memory.baseline_pair) == (state.analysis, 5.0, ("s", "c"))
    measured, requeue, memory = step._analyse(
        decision(plan_decision.ActionKind.MEASURE), memory, round_(6, *both), 6
    )
    assert measured.analysis is not None and measured.analysis.measurements == 1 and requeue == 0.0
    # The canary Pod stops answering: two due measurements only re-baseline, the third is inconclusive.
    for at in (11, 16):
        same, requeue, memory = step._analyse(
            decision(plan_decision.ActionKind.MEASURE), memory, round_(at, ("s1", "s")), at
        )
        assert same.analysis == state.analysis and requeue == 5.0
    gave_up, requeue, memory = step._analyse(
        decision(plan_decision.ActionKind.MEASURE), memory, round_(21, ("s1", "s")), 21
    )
    assert gave_up.analysis is not None and gave_up.analysis.inconclusive == 1 and requeue == 0.0
    assert "no Pod of s and c answered /metrics twice" in gave_up.analysis.last_message
    assert memory.missed == 0


def _canary(status: dict[str, Any], annotations: dict[str, str] | None = None) -> Any:
    spec = {
        **fixtures.with_worker(),
        "rollout": {"strategy": "canary", "canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}},
    }
    body = fixtures.body(spec, status={"rollout": status})
    body["metadata"]["annotations"] = annotations or {}
    return parse(body)


def _revision_deployment(name: str, revision: str, ready: int = 2) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "generation": 1},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"resonance.liminal.dev/revision": revision}},
            "template": {"metadata": {"labels": {}}, "spec": {}},
        },
        "status": {"readyReplicas": ready, "replicas": 2, "observedGeneration": 1},
    }


def test_a_new_template_starts_a_canary_and_the_memory_is_untouched() -> None:
    cluster = _canary({"strategy": "canary", "stableRevision": "r1"})
    observed = Observed(
        children={
            ChildKey("apps/v1", "Deployment", "demo-worker-r1"): _revision_deployment("demo-worker-r1", "r1")
        }
    )
    memory = step.Memory(baseline_pair=("a", "b"), missed=1)
    done = step.take(
        step.Observation(cluster, observed, plan_state.RolloutState(stable_revision="r1")), memory, 7.0
    )
    desired = worker.revision(cluster)
    assert done.decision.action is plan_decision.ActionKind.SET_WEIGHT
    assert done.memory is memory
    assert done.topology is not None and (done.topology.stable, done.topology.canary) == ("r1", desired)
    assert list(done.live) == ["r1"]
    assert done.requeue_after == 5.0 and done.drains is None and not done.remove_annotation
    assert [note[1] for note in done.notes] == [EventReason.ROLLOUT_STARTED]
    # setWeight 20, but the canary has no ready Pod yet: every new connection still goes to stable.
    assert done.view.status["weights"] == {"stable": 100, "canary": 0}
    assert done.view.status["updateRevision"] == desired and done.view.progressing


def test_weights_are_the_replica_ratio_the_worker_service_really_splits_by() -> None:
    cluster = _canary({"strategy": "canary", "stableRevision": "r1"})
    desired = worker.revision(cluster)
    stable = _revision_deployment("demo-worker-r1", "r1", ready=1)
    canary = _revision_deployment(f"demo-worker-{desired}", desired, ready=1)
    live = {"r1": stable, desired: canary}
    topology = revisions.Topology(stable="r1", canary=desired, weight=20)
    # setWeight 20 with one ready Pod each: the Service spreads new connections 1:1.
    assert revisions.traffic_weights(cluster, topology, live) == {"stable": 50, "canary": 50}
    assert revisions.traffic_weights(cluster, revisions.Topology(stable="r1"), live) == {
        "stable": 100,
        "canary": 0,
    }
    spec = {
        **fixtures.with_worker(),
        "ingress": {"enabled": True, "host": "x.example", "className": "nginx"},
        "rollout": {"strategy": "canary", "canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}},
    }
    routed = parse(fixtures.body(spec))
    # Behind ingress-nginx's canary Ingress the router applies the weight as set.
    assert revisions.traffic_weights(routed, topology, live) == {"stable": 80, "canary": 20}


def test_a_promotion_drains_the_old_revision_after_the_children_are_applied() -> None:
    cluster = _canary(
        {"strategy": "canary", "stableRevision": "r1"}, {plan_request.ACTION_ANNOTATION: "promote-full"}
    )
    desired = worker.revision(cluster)
    state = plan_state.RolloutState(
        stable_revision="r1", canary_revision=desired, weight=20, step_started_at=0.0
    )
    targets = (PodTarget("old-1", "r1", "10.0.0.1", 8000), PodTarget("new-1", desired, "10.0.0.2", 8000))
    observation = step.Observation(cluster, Observed(), state, targets=targets, api_key="k3y")
    done = step.take(observation, step.Memory(), 100.0)
    assert done.decision.action is plan_decision.ActionKind.PROMOTE
    assert done.remove_annotation
    assert done.drains is not None and done.drains.api_key == "k3y"
    assert [(target.name, request.pods) for target, request in done.drains.orders] == [("old-1", 1)]
    assert done.drains.orders[0][1].deadline_seconds == 300.0  # drain.maxDrainSeconds
    assert EventReason.ROLLOUT_PROMOTED in {note[1] for note in done.notes}
    # Without the workers' API key there is nobody to ask: the deadline ends the drain instead.
    keyless = step.take(step.Observation(cluster, Observed(), state, targets=targets), step.Memory(), 100.0)
    assert keyless.drains is None


def test_drained_needs_every_losing_pod_or_no_revision_left() -> None:
    cluster = _canary({})
    state = plan_state.RolloutState(stable_revision="r2", draining_revision="r1")
    live = {"r1": _revision_deployment("demo-worker-r1", "r1")}

    def observation(*may_leave: bool | None) -> step.Observation:
        reports = tuple(None if m is None else DrainReport(True, 0, m) for m in may_leave)
        return step.Observation(cluster, Observed(), state, drain_reports=reports)

    assert not step._drained(step.Observation(cluster, Observed(), state), live)
    assert step._drained(observation(True, True), live)
    assert not step._drained(observation(True, False), live)
    assert not step._drained(observation(True, None), live)
    assert step._drained(observation(None), {})  # its Deployment is gone already


def test_rolling_only_records_revisions_and_drops_any_annotation() -> None:
    body = fixtures.body()
    body["metadata"]["annotations"] = {plan_request.ACTION_ANNOTATION: "promote"}
    cluster = parse(body)
    done = step.take(step.Observation(cluster, Observed(), plan_state.RolloutState()), step.Memory(), 1.0)
    assert done.decision.reason is ProgressingReason.ROLLOUT_COMPLETED
    assert done.remove_annotation and done.topology is None and done.drains is None
    assert done.requeue_after is None and done.view.workers is None
