"""The rollout step machine, driven like the reconciler drives it: with a clock we move by hand."""

from __future__ import annotations

import dataclasses
import doctest
from pathlib import Path
from typing import Any

import pytest
import yaml
from resonance_operator.api.conditions import DegradedReason, EventType, ProgressingReason
from resonance_operator.api.spec import RolloutSpec
from resonance_operator.rollout import decision as decision_module
from resonance_operator.rollout import plan, request, state, strategies
from resonance_operator.rollout.analysis import AnalysisRun, AnalysisSpec, Measurement, Phase
from resonance_operator.rollout.decision import READINESS_POLL_SECONDS, ActionKind, Decision, Observed
from resonance_operator.rollout.plan import decide
from resonance_operator.rollout.request import ACTION_ANNOTATION, Request, UnknownRequestError, parse_request
from resonance_operator.rollout.state import RolloutState, record

ANALYSIS = {"intervalSeconds": 30, "consecutiveSuccesses": 2}
CANARY_STEPS = [
    {"setWeight": 20},
    {"pause": {"durationSeconds": 60}},
    {"analysis": ANALYSIS},
    {"setWeight": 50},
    {"pause": {}},
]


def rollout_spec(strategy: str = "canary", **sections: Any) -> RolloutSpec:
    body: dict[str, Any] = {"strategy": strategy, **sections}
    if strategy == "canary" and "canary" not in sections:
        body["canary"] = {"steps": CANARY_STEPS}
    return RolloutSpec.model_validate(body)


class Driver:
    """Holds what the reconciler would store in ``status.rollout`` between calls."""

    def __init__(self, spec: RolloutSpec, stable: str = "r1", **kw: Any) -> None:
        self.spec = spec
        self.state = RolloutState(stable_revision=stable)
        self.kw = kw
        self.history: list[Decision] = []

    def at(self, now: float, desired: str = "r2", **observed: Any) -> Decision:
        decision = decide(self.spec, self.state, Observed(desired, **observed), now, **self.kw)
        self.state = decision.state
        self.history.append(decision)
        return decision

    def measured(self, phase: Phase, now: float) -> None:
        self.state = record(self.state, Measurement(phase, ()), now)


def test_docstring_examples() -> None:
    for module in (plan, request, state, decision_module, strategies):
        assert doctest.testmod(module).failed == 0


def test_first_deployment_is_complete_at_once() -> None:
    decision = decide(rollout_spec(), RolloutState(), Observed("r1"), 0.0)
    assert decision.action is ActionKind.NONE
    assert decision.reason is ProgressingReason.ROLLOUT_COMPLETED
    assert decision.state.stable_revision == "r1"
    assert not decision.progressing
    assert decision.requeue_after is None


def test_a_request_with_nothing_in_flight_is_answered_and_dropped() -> None:
    decision = Driver(rollout_spec()).at(0.0, desired="r1", request=Request.PROMOTE)
    assert decision.reason is ProgressingReason.ROLLOUT_COMPLETED
    assert decision.request_handled
    assert "ignored" in decision.message


def test_canary_to_a_good_version_walks_its_steps_and_promotes() -> None:
    run = Driver(rollout_spec())
    first = run.at(0.0)
    assert (first.action, first.state.weight, first.step) == (ActionKind.SET_WEIGHT, 20, "1/5")
    assert first.reason is ProgressingReason.CANARY_STEP_PROGRESSING
    assert first.weights == {"stable": 80, "canary": 20}
    assert run.state.canary_revision == "r2"

    waiting = run.at(1.0)
    assert (waiting.action, waiting.requeue_after) == (ActionKind.NONE, READINESS_POLL_SECONDS)
    assert "waiting for canary Pods" in waiting.message

    paused = run.at(5.0, canary_ready=True)
    assert (paused.reason, paused.requeue_after, paused.step) == (
        ProgressingReason.ROLLOUT_PAUSED,
        60.0,
        "2/5",
    )
    assert run.at(35.0, canary_ready=True).requeue_after == 30.0

    started = run.at(65.0, canary_ready=True)
    assert started.action is ActionKind.START_ANALYSIS
    assert started.analysis is not None and started.analysis.consecutive_successes == 2
    assert started.requeue_after == 30.0
    early = run.at(80.0, canary_ready=True)
    assert (early.action, early.requeue_after) == (ActionKind.NONE, 15.0)
    due = run.at(95.0, canary_ready=True)
    assert (due.action, due.requeue_after) == (ActionKind.MEASURE, 30.0)
    run.measured(Phase.SUCCESSFUL, 95.0)
    assert run.at(125.0, canary_ready=True).action is ActionKind.MEASURE
    run.measured(Phase.SUCCESSFUL, 125.0)

    fifty = run.at(125.0, canary_ready=True)
    assert (fifty.action, fifty.state.weight, fifty.state.analysis) == (ActionKind.SET_WEIGHT, 50, None)
    hold = run.at(130.0, canary_ready=True)
    assert (hold.reason, hold.requeue_after, hold.step) == (ProgressingReason.ROLLOUT_PAUSED, None, "5/5")
    assert f"{ACTION_ANNOTATION}=promote" in hold.message

    promoted = run.at(500.0, canary_ready=True, request=Request.PROMOTE)
    assert promoted.action is ActionKind.PROMOTE
    assert promoted.request_handled
    assert promoted.event is not None and promoted.event.type is EventType.NORMAL
    assert promoted.event.reason == "RolloutPromoted"
    assert (promoted.state.stable_revision, promoted.state.canary_revision) == ("r2", None)
    assert (promoted.state.draining_revision, promoted.state.drain_deadline) == ("r1", 800.0)
    assert promoted.reason is ProgressingReason.DRAINING_PREVIOUS

    draining = run.at(510.0)
    assert (draining.action, draining.reason) == (
        ActionKind.DRAIN_PREVIOUS,
        ProgressingReason.DRAINING_PREVIOUS,
    )
    done = run.at(520.0, previous_drained=True)
    assert (done.action, done.reason) == (ActionKind.SCALE_DOWN_PREVIOUS, ProgressingReason.ROLLOUT_COMPLETED)
    assert run.state == RolloutState(stable_revision="r2")
    assert run.at(530.0).reason is ProgressingReason.ROLLOUT_COMPLETED


def to_analysis(run: Driver) -> None:
    run.at(0.0)
    run.at(5.0, canary_ready=True)
    assert run.at(65.0, canary_ready=True).action is ActionKind.START_ANALYSIS


def test_canary_to_a_bad_version_is_rolled_back_by_analysis() -> None:
    run = Driver(rollout_spec())
    to_analysis(run)
    run.measured(Phase.FAILED, 95.0)
    rolled = run.at(95.0, canary_ready=True)
    assert rolled.action is ActionKind.ROLL_BACK
    assert rolled.reason is ProgressingReason.ROLLED_BACK
    assert rolled.degraded is DegradedReason.ANALYSIS_FAILED
    assert rolled.event is not None and rolled.event.type is EventType.WARNING
    assert rolled.event.reason == "AnalysisFailed"
    assert rolled.state.weight == 0 and rolled.weights == {"stable": 100, "canary": 0}
    assert rolled.state.draining_revision == "r2"
    assert not rolled.progressing

    still = run.at(100.0)
    assert (still.action, still.reason, still.degraded) == (
        ActionKind.DRAIN_PREVIOUS,
        ProgressingReason.ROLLED_BACK,
        DegradedReason.ANALYSIS_FAILED,
    )
    # A request during the drain waits in the annotation.
    waiting = run.at(101.0, request=Request.PROMOTE)
    assert not waiting.request_handled and "waits until r2 has drained" in waiting.message
    drained = run.at(110.0, previous_drained=True)
    assert drained.action is ActionKind.SCALE_DOWN_PREVIOUS
    assert (drained.reason, drained.degraded, drained.requeue_after) == (
        ProgressingReason.ROLLED_BACK,
        DegradedReason.ANALYSIS_FAILED,
        None,
    )
    parked = run.at(200.0, request=Request.PROMOTE)
    assert (parked.action, parked.reason, parked.request_handled) == (
        ActionKind.NONE,
        ProgressingReason.ROLLED_BACK,
        True,
    )
    assert "retry" in parked.message

    retried = run.at(300.0, request=Request.RETRY)
    assert (retried.action, retried.state.weight, retried.degraded, retried.request_handled) == (
        ActionKind.SET_WEIGHT,
        20,
        None,
        True,
    )


def test_retry_during_the_rollback_drain_reuses_the_canary() -> None:
    run = Driver(rollout_spec())
    run.at(0.0)
    aborted = run.at(1.0, request=Request.ABORT)
    assert (aborted.action, aborted.degraded) == (ActionKind.ROLL_BACK, DegradedReason.ROLLOUT_ABORTED)
    assert aborted.request_handled
    retried = run.at(2.0, request=Request.RETRY)
    assert (retried.action, retried.state.draining_revision, retried.degraded) == (
        ActionKind.SET_WEIGHT,
        None,
        None,
    )


def test_inconclusive_analysis_pauses_then_retry_promote_or_abort() -> None:
    run = Driver(rollout_spec())
    to_analysis(run)
    run.measured(Phase.INCONCLUSIVE, 95.0)
    paused = run.at(95.0, canary_ready=True)
    assert (paused.action, paused.reason) == (ActionKind.NONE, ProgressingReason.ROLLOUT_PAUSED)
    assert "inconclusive" in paused.message and paused.requeue_after is None

    restarted = run.at(100.0, canary_ready=True, request=Request.RETRY)
    assert (restarted.action, restarted.request_handled) == (ActionKind.START_ANALYSIS, True)
    assert restarted.state.analysis == AnalysisRun(started_at=100.0)

    run.measured(Phase.INCONCLUSIVE, 130.0)
    skipped = run.at(131.0, canary_ready=True, request=Request.PROMOTE)
    assert (skipped.action, skipped.state.weight, skipped.step) == (ActionKind.SET_WEIGHT, 50, "4/5")

    again = Driver(rollout_spec())
    to_analysis(again)
    again.measured(Phase.INCONCLUSIVE, 95.0)
    assert again.at(96.0, request=Request.ABORT).degraded is DegradedReason.ROLLOUT_ABORTED


def test_invalid_analysis_degrades_with_invalid_rollout_spec() -> None:
    spec = rollout_spec(canary={"steps": [{"analysis": {"intervalSeconds": 0}}]})
    decision = Driver(spec).at(0.0)
    assert decision.degraded is DegradedReason.INVALID_ROLLOUT_SPEC
    assert decision.reason is ProgressingReason.ROLLOUT_PAUSED
    assert "intervalSeconds" in decision.message


def test_promote_full_skips_every_remaining_step() -> None:
    run = Driver(rollout_spec())
    run.at(0.0)
    promoted = run.at(1.0, request=Request.PROMOTE_FULL)
    assert (promoted.action, promoted.state.stable_revision, promoted.request_handled) == (
        ActionKind.PROMOTE,
        "r2",
        True,
    )


def test_canary_without_steps_promotes_at_once_and_an_empty_step_is_skipped() -> None:
    assert Driver(rollout_spec(canary={"steps": []})).at(0.0).action is ActionKind.PROMOTE
    assert Driver(rollout_spec("canary", canary=None)).at(0.0).action is ActionKind.PROMOTE
    assert Driver(rollout_spec(canary={"steps": [{}]})).at(0.0).action is ActionKind.PROMOTE


def test_a_template_reverted_mid_canary_drains_the_canary_without_blame() -> None:
    run = Driver(rollout_spec())
    run.at(0.0)
    reverted = run.at(10.0, desired="r1")
    assert (reverted.action, reverted.reason, reverted.degraded) == (
        ActionKind.ROLL_BACK,
        ProgressingReason.ROLLED_BACK,
        None,
    )
    assert (reverted.state.canary_revision, reverted.state.draining_revision) == (None, "r2")
    done = run.at(20.0, desired="r1", previous_drained=True)
    assert (done.action, done.reason) == (ActionKind.SCALE_DOWN_PREVIOUS, ProgressingReason.ROLLOUT_COMPLETED)


def test_a_newer_template_supersedes_the_canary_after_draining_it() -> None:
    run = Driver(rollout_spec())
    run.at(0.0)
    superseded = run.at(10.0, desired="r3")
    assert (superseded.action, superseded.reason) == (
        ActionKind.ROLL_BACK,
        ProgressingReason.DRAINING_PREVIOUS,
    )
    assert (superseded.state.canary_revision, superseded.state.draining_revision) == ("r3", "r2")
    drained = run.at(20.0, desired="r3", previous_drained=True)
    assert (drained.action, drained.requeue_after) == (ActionKind.SCALE_DOWN_PREVIOUS, 0.0)
    assert "r3 starts next" in drained.message
    assert drained.state.step_started_at == 20.0
    nxt = run.at(20.0, desired="r3")
    assert (nxt.action, nxt.state.canary_revision, nxt.state.weight) == (ActionKind.SET_WEIGHT, "r3", 20)


def test_after_a_rollback_a_new_template_starts_without_draining_again() -> None:
    run = Driver(rollout_spec())
    run.at(0.0)
    run.at(1.0, request=Request.ABORT)
    run.at(2.0, previous_drained=True)
    fresh = run.at(3.0, desired="r3")
    assert (fresh.action, fresh.state.canary_revision, fresh.degraded) == (ActionKind.SET_WEIGHT, "r3", None)


def test_after_a_rollback_going_back_to_stable_clears_degraded() -> None:
    run = Driver(rollout_spec())
    run.at(0.0)
    run.at(1.0, request=Request.ABORT)
    run.at(2.0, previous_drained=True)
    back = run.at(3.0, desired="r1")
    assert (back.reason, back.degraded, back.state) == (
        ProgressingReason.ROLLOUT_COMPLETED,
        None,
        RolloutState(stable_revision="r1"),
    )


def blue_green(**options: Any) -> RolloutSpec:
    return rollout_spec("blueGreen", blueGreen=options, drain={"maxDrainSeconds": 120})


def test_blue_green_by_hand_waits_scale_down_delay_then_drains_until_the_deadline() -> None:
    run = Driver(blue_green(scaleDownDelaySeconds=30))
    preview = run.at(0.0)
    assert (preview.action, preview.reason, preview.step) == (
        ActionKind.DEPLOY_PREVIEW,
        ProgressingReason.PREVIEW_PROGRESSING,
        "preview",
    )
    assert run.at(3.0).action is ActionKind.DEPLOY_PREVIEW
    ready = run.at(6.0, canary_ready=True)
    assert (ready.reason, ready.step, ready.requeue_after) == (
        ProgressingReason.ROLLOUT_PAUSED,
        "promotion",
        None,
    )
    promoted = run.at(50.0, canary_ready=True, request=Request.PROMOTE)
    assert promoted.action is ActionKind.PROMOTE
    assert (promoted.state.drain_not_before, promoted.state.drain_deadline) == (80.0, 200.0)
    delay = run.at(60.0)
    assert (delay.action, delay.requeue_after) == (ActionKind.NONE, 20.0)
    assert "scaleDownDelaySeconds" in delay.message
    assert run.at(80.0).action is ActionKind.DRAIN_PREVIOUS
    late = run.at(200.0)
    assert (late.action, late.reason) == (ActionKind.SCALE_DOWN_PREVIOUS, ProgressingReason.ROLLOUT_COMPLETED)
    assert "out of drain time" in late.message


def test_blue_green_pre_promotion_analysis_then_auto_promotion_after_a_delay() -> None:
    analysis = AnalysisSpec(interval_seconds=10, consecutive_successes=1)
    run = Driver(
        blue_green(autoPromotionEnabled=True, autoPromotionSeconds=60), pre_promotion_analysis=analysis
    )
    run.at(0.0)
    started = run.at(5.0, canary_ready=True)
    assert (started.action, started.step, started.reason) == (
        ActionKind.START_ANALYSIS,
        "analysis",
        ProgressingReason.PREVIEW_PROGRESSING,
    )
    run.measured(Phase.SUCCESSFUL, 15.0)
    waiting = run.at(15.0, canary_ready=True)
    assert (waiting.reason, waiting.requeue_after) == (ProgressingReason.ROLLOUT_PAUSED, 60.0)
    assert run.at(75.0, canary_ready=True).action is ActionKind.PROMOTE


def test_blue_green_failed_pre_promotion_analysis_rolls_back() -> None:
    run = Driver(blue_green(autoPromotionEnabled=True), pre_promotion_analysis=AnalysisSpec())
    run.at(0.0)
    run.at(5.0, canary_ready=True)
    run.measured(Phase.FAILED, 35.0)
    rolled = run.at(35.0, canary_ready=True)
    assert (rolled.action, rolled.degraded) == (ActionKind.ROLL_BACK, DegradedReason.ANALYSIS_FAILED)


def test_blue_green_promote_during_analysis_and_immediate_auto_promotion() -> None:
    run = Driver(blue_green(), pre_promotion_analysis=AnalysisSpec())
    run.at(0.0)
    run.at(5.0, canary_ready=True)
    assert run.at(6.0, canary_ready=True, request=Request.PROMOTE).action is ActionKind.PROMOTE
    auto = Driver(blue_green(autoPromotionEnabled=True))
    auto.at(0.0)
    assert auto.at(5.0, canary_ready=True).action is ActionKind.PROMOTE
    default = Driver(rollout_spec("blueGreen"))
    default.at(0.0)
    assert default.at(5.0, canary_ready=True).reason is ProgressingReason.ROLLOUT_PAUSED


def test_rolling_tracks_the_new_revision_until_ready() -> None:
    run = Driver(rollout_spec("rolling"))
    update = run.at(0.0)
    assert (update.action, update.reason, update.step) == (
        ActionKind.ROLLING_UPDATE,
        ProgressingReason.ROLLING_UPDATE,
        "rolling",
    )
    assert "maxSurge 25%" in update.message
    ignored = run.at(5.0, request=Request.PROMOTE)
    assert ignored.request_handled and "does not apply now" in ignored.message
    done = run.at(10.0, canary_ready=True)
    assert (done.reason, done.state) == (
        ProgressingReason.ROLLOUT_COMPLETED,
        RolloutState(stable_revision="r2"),
    )


def test_retry_with_nothing_to_retry_is_dropped_with_a_note() -> None:
    run = Driver(rollout_spec())
    run.at(0.0)
    decision = run.at(1.0, request=Request.RETRY)
    assert decision.request_handled and "does not apply now" in decision.message


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        (None, None),
        ({}, None),
        ({ACTION_ANNOTATION: "  "}, None),
        ({ACTION_ANNOTATION: "promote"}, Request.PROMOTE),
        ({ACTION_ANNOTATION: "ABORT"}, Request.ABORT),
        ({ACTION_ANNOTATION: "promote-full"}, Request.PROMOTE_FULL),
        ({ACTION_ANNOTATION: "retry"}, Request.RETRY),
    ],
)
def test_parse_request(annotations: dict[str, str] | None, expected: Request | None) -> None:
    assert parse_request(annotations) is expected


def test_parse_request_names_the_allowed_values() -> None:
    with pytest.raises(UnknownRequestError, match="promote, promote-full, abort, retry"):
        parse_request({ACTION_ANNOTATION: "yolo"})


def test_state_round_trips_through_status() -> None:
    state = RolloutState(
        stable_revision="r1",
        canary_revision="r2",
        step_index=2,
        step_started_at=65.0,
        weight=20,
        abort_reason=DegradedReason.ANALYSIS_FAILED,
        analysis=AnalysisRun(started_at=65.0, measurements=1, failures=1, last_measured_at=95.0),
        draining_revision="r2",
        drain_not_before=95.0,
        drain_deadline=395.0,
    )
    assert RolloutState.from_status(state.to_status()) == state
    assert RolloutState.from_status(None) == RolloutState()
    assert RolloutState.from_status(RolloutState().to_status()) == RolloutState()


def test_record_needs_a_running_analysis() -> None:
    with pytest.raises(ValueError, match="no analysis"):
        record(RolloutState(), Measurement(Phase.SUCCESSFUL, ()), 0.0)


def test_step_label_is_empty_when_nothing_is_in_flight() -> None:
    decision = Driver(rollout_spec()).at(0.0, desired="r1")
    assert decision.step == ""
    legacy = dataclasses.replace(RolloutState(stable_revision="r1"), step_started_at=None)
    assert decide(rollout_spec(), legacy, Observed("r2"), 0.0).step == "1/5"


def test_status_uses_the_crds_rollout_fields_for_the_printer_columns() -> None:
    crd = yaml.safe_load(
        (Path(__file__).parents[3] / "crds" / "resonance.liminal.dev_resonanceclusters.yaml").read_text()
    )
    version = crd["spec"]["versions"][0]
    declared = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["rollout"]
    written = RolloutState(stable_revision="r1", canary_revision="r2", step_index=1, weight=20).to_status()
    assert {"currentStep", "canaryWeight", "stableRevision", "updateRevision"} <= set(declared["properties"])
    assert {"currentStep", "canaryWeight", "stableRevision", "updateRevision"} <= set(written)
    assert declared["x-kubernetes-preserve-unknown-fields"] is True  # the other fields survive
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    # 1-based ("2/5", or the blue-green phase) and the weights as traffic really splits.
    assert columns["Step"] == ".status.rollout.step"
    assert columns["Weight"] == ".status.rollout.weights.canary"
    assert "priority" not in next(c for c in version["additionalPrinterColumns"] if c["name"] == "Degraded")


def test_abort_after_a_rollback_does_not_drain_twice() -> None:
    run = Driver(rollout_spec())
    run.at(0.0)
    run.at(1.0, request=Request.ABORT)
    run.at(2.0, previous_drained=True)
    again = run.at(3.0, request=Request.ABORT)
    assert (again.action, again.reason, again.request_handled) == (
        ActionKind.NONE,
        ProgressingReason.ROLLED_BACK,
        True,
    )
    assert again.state.draining_revision is None


def test_spec_errors_name_the_bad_analysis_and_a_missing_gateway_api() -> None:
    spec = RolloutSpec.model_validate(
        {
            "strategy": "canary",
            "canary": {"steps": [{"setWeight": 10}, {"analysis": {"intervalSeconds": 0}}]},
            "blueGreen": {"prePromotionAnalysis": {"metrics": [{"kind": "nope"}]}},
            "gatewayRoute": {"parentRefs": [{"name": "gw"}]},
        }
    )
    errors = plan.spec_errors(spec, gateway_served=False)
    assert errors[0].startswith("spec.rollout.canary.steps[1].analysis.intervalSeconds: ")
    assert errors[1].startswith("spec.rollout.blueGreen.prePromotionAnalysis.metrics.0.kind: ")
    assert "Gateway API" in errors[2] and len(errors) == 3
    assert plan.spec_errors(RolloutSpec(), gateway_served=False) == []
    served = RolloutSpec.model_validate({"gatewayRoute": {"parentRefs": [{"name": "gw"}]}})
    assert plan.spec_errors(served, gateway_served=True) == []
