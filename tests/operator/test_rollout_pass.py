"""Pure pieces of the rollout pass (its I/O runs in e2e/operator/test_rollouts.py)."""

from __future__ import annotations

import base64
from typing import Any

from resonance_operator import rollout_pass
from resonance_operator.api.conditions import EventReason, EventType
from resonance_operator.api.observed import ChildKey, Observed
from resonance_operator.probe.pods import PodTarget
from resonance_operator.rollout import decision as plan_decision
from resonance_operator.rollout import request as plan_request
from resonance_operator.rollout import state as plan_state

from tests.operator import fixtures


def test_unknown_action_is_a_warning_and_no_request() -> None:
    notes: list[rollout_pass.Note] = []
    body = {"metadata": {"annotations": {plan_request.ACTION_ANNOTATION: "yolo"}}}
    assert rollout_pass._request(body, notes) == (None, True)
    assert notes[0][:2] == (EventType.WARNING, EventReason.INVALID_ROLLOUT_ACTION)
    assert "'yolo' is not one of promote" in notes[0][2]
    assert rollout_pass._request({"metadata": {}}, notes) == (None, False)
    promote = {"metadata": {"annotations": {plan_request.ACTION_ANNOTATION: "Promote"}}}
    assert rollout_pass._request(promote, notes) == (plan_request.Request.PROMOTE, True)


def test_scrapes_skip_a_pod_with_malformed_metrics() -> None:
    good = (PodTarget("a", "r1", "10.0.0.1", 8000), "resonance_connections 3\n")
    bad = (PodTarget("b", "r1", "10.0.0.2", 8000), "resonance_connections{ 3\n")
    scrapes = rollout_pass._scrapes([good, bad], 100.0)
    assert [(s.pod, s.revision, s.at) for s in scrapes] == [("a", "r1", 100.0)]
    assert rollout_pass._connections(scrapes, "r1") == 3
    assert rollout_pass._connections(scrapes, "r2") is None
    assert rollout_pass._connections(scrapes, None) is None


def test_api_key_and_live_revisions_come_from_the_observation() -> None:
    cluster = fixtures.cluster()
    secret_key = ChildKey("v1", "Secret", "demo-worker-api")
    encoded = base64.b64encode(b"k3y").decode()
    assert rollout_pass.api_key(Observed(), cluster) is None
    assert rollout_pass.api_key(Observed(children={secret_key: {"data": {}}}), cluster) is None
    assert rollout_pass.api_key(Observed(children={secret_key: {"data": {"key": encoded}}}), cluster) == "k3y"

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
    assert list(rollout_pass.live_revisions(cluster, Observed(children=children))) == ["r1"]


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
    assert rollout_pass._pre_promotion(cluster) is None
    fine = fixtures.cluster(
        {
            **fixtures.with_worker(),
            "rollout": {
                "strategy": "blueGreen",
                "blueGreen": {"prePromotionAnalysis": {"intervalSeconds": 2}},
            },
        }
    )
    analysis = rollout_pass._pre_promotion(fine)
    assert analysis is not None and analysis.interval_seconds == 2


def test_scrapes_are_comparable_only_with_a_pod_of_each_revision_in_both_rounds() -> None:
    from resonance_operator.rollout.scrapes import Scrape

    def scrape(pod: str, revision: str) -> Scrape:
        return Scrape(pod, revision, 0.0, ())

    before = [scrape("s1", "stable"), scrape("c1", "canary")]
    assert rollout_pass._comparable(
        before, [scrape("s1", "stable"), scrape("c1", "canary")], ("stable", "canary")
    )
    # The canary Pod was not answering at the baseline.
    assert not rollout_pass._comparable(before[:1], before, ("stable", "canary"))
    assert not rollout_pass._comparable(
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

    memory = rollout_pass.Memory()
    both = [("s1", "s"), ("c1", "c")]
    after, requeue = rollout_pass._analyse(
        decision(plan_decision.ActionKind.START_ANALYSIS), memory, round_(1, *both), 1
    )
    assert (after.analysis, requeue, memory.baseline_pair) == (state.analysis, 5.0, ("s", "c"))
    measured, requeue = rollout_pass._analyse(
        decision(plan_decision.ActionKind.MEASURE), memory, round_(6, *both), 6
    )
    assert measured.analysis is not None and measured.analysis.measurements == 1 and requeue == 0.0
    # The canary Pod stops answering: two due measurements only re-baseline, the third is inconclusive.
    for at in (11, 16):
        same, requeue = rollout_pass._analyse(
            decision(plan_decision.ActionKind.MEASURE), memory, round_(at, ("s1", "s")), at
        )
        assert same.analysis == state.analysis and requeue == 5.0
    gave_up, requeue = rollout_pass._analyse(
        decision(plan_decision.ActionKind.MEASURE), memory, round_(21, ("s1", "s")), 21
    )
    assert gave_up.analysis is not None and gave_up.analysis.inconclusive == 1 and requeue == 0.0
    assert "no Pod of s and c answered /metrics twice" in gave_up.analysis.last_message
    assert memory.missed == 0
