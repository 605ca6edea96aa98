"""The rollout step machine: given the spec, what was recorded and ``now``, what next.

:func:`decide` is pure. The rollout pass feeds it the ``rollout`` section of the
spec, the :class:`~resonance_operator.rollout.state.RolloutState` stored in
``status.rollout`` last time, and what it
:class:`~resonance_operator.rollout.decision.Observed` (the revision the worker
template hashes to, whether the new revision's Pods are ready, whether the old
revision has drained, and a request read from the
``resonance.liminal.dev/rollout-action`` annotation). It gets back a
:class:`~resonance_operator.rollout.decision.Decision`: one action to take, the
state to store, the ``Progressing`` reason (the step of the machine is that reason
plus ``stepIndex``), an optional ``Degraded`` reason and Event, and how long to
wait before asking again. Nothing sleeps, so a rollout survives an operator
restart at any point.

This module holds what every strategy goes through (first deployment, a new
revision starting, requests, the drain of a losing revision);
:mod:`~resonance_operator.rollout.strategies` holds each strategy's own steps.

Strategies:

* ``rolling`` — the worker Deployment's own rolling update (the workers drain on
  SIGTERM); the machine only tracks the revision until its Pods are ready.
* ``canary`` — steps ``setWeight`` (then wait for the canary Pods), ``pause``
  (for ``durationSeconds``, or until promoted) and ``analysis``; after the last
  step the canary is promoted and the old revision drains.
* ``blueGreen`` — preview (the new revision behind the preview Service), an
  optional pre-promotion analysis, promotion by hand or automatically (after
  ``autoPromotionSeconds``), then ``scaleDownDelaySeconds`` before the old
  revision starts draining.

A promotion or a rollback never cuts sockets: the revision that loses keeps its
Pods (out of new traffic) while they hand clients over in budgeted batches, until
they report drained or ``drain.maxDrainSeconds`` passes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pydantic

from resonance_operator.api.conditions import DegradedReason, ProgressingReason
from resonance_operator.api.spec import RolloutSpec, RolloutStrategy
from resonance_operator.rollout.analysis import AnalysisSpec
from resonance_operator.rollout.decision import (
    READINESS_POLL_SECONDS,
    ActionKind,
    Context,
    Decision,
    Observed,
    drain_state,
    make_decision,
    promote,
    roll_back,
)
from resonance_operator.rollout.request import ACTION_ANNOTATION, Request
from resonance_operator.rollout.state import RolloutState
from resonance_operator.rollout.strategies import blue_green_phases, canary_steps, rolling_update


def current_analysis(spec: RolloutSpec, state: RolloutState) -> AnalysisSpec | None:
    """The analysis whose run is in flight (``state.analysis`` set): the current canary step's, or
    blue-green's pre-promotion analysis; ``None`` when none runs or it does not parse."""
    if state.analysis is None:
        return None
    raw: dict[str, Any] | None = None
    if spec.strategy is RolloutStrategy.CANARY and spec.canary is not None:
        steps = spec.canary.steps
        raw = steps[state.step_index].analysis if state.step_index < len(steps) else None
    elif spec.strategy is RolloutStrategy.BLUE_GREEN and spec.blue_green is not None:
        raw = spec.blue_green.pre_promotion_analysis
    if raw is None:
        return None
    try:
        return AnalysisSpec.model_validate(raw)
    except pydantic.ValidationError:
        return None


def spec_errors(spec: RolloutSpec, *, gateway_served: bool) -> list[str]:
    """Rollout settings the CRD schema cannot check: every analysis parses, the Gateway API is served."""
    analyses: list[tuple[str, Any]] = []
    if spec.canary is not None:
        analyses += [
            (f"spec.rollout.canary.steps[{i}].analysis", step.analysis)
            for i, step in enumerate(spec.canary.steps)
            if step.analysis is not None
        ]
    if spec.blue_green is not None and spec.blue_green.pre_promotion_analysis is not None:
        analyses.append(
            ("spec.rollout.blueGreen.prePromotionAnalysis", spec.blue_green.pre_promotion_analysis)
        )
    errors: list[str] = []
    for where, raw in analyses:
        try:
            AnalysisSpec.model_validate(raw)
        except pydantic.ValidationError as error:
            first = error.errors()[0]
            location = ".".join(str(part) for part in first["loc"])
            errors.append(f"{where}.{location}: {first['msg']}")
    if spec.gateway_route is not None and not gateway_served:
        errors.append(
            "spec.rollout.gatewayRoute: the Gateway API (gateway.networking.k8s.io/v1 HTTPRoute) "
            "is not served"
        )
    return errors


def decide(
    spec: RolloutSpec,
    state: RolloutState,
    observed: Observed,
    now: float,
    *,
    pre_promotion_analysis: AnalysisSpec | None = None,
) -> Decision:
    """The next action. Call again after ``requeue_after`` or on any change.

    Worked example (canary, steps ``setWeight 20``, ``pause 60 s``, ``analysis``):
    a new template hash starts the rollout at step 0 → ``SetWeight`` 20; once the
    canary is ready → step 1, ``RolloutPaused`` wait 60 s; then step 2 →
    ``StartAnalysis``, ``Measure`` every ``intervalSeconds``; three successes in a
    row → ``Promote`` and ``DrainingPrevious`` until the old Pods are drained →
    ``ScaleDownPrevious`` → ``RolloutCompleted``. A failed analysis instead gives
    ``RollBack``, ``RolledBack`` and ``Degraded``/``AnalysisFailed`` with a Warning
    Event, until ``retry`` or a new template.
    """
    ctx = Context(spec, observed, now, pre_promotion_analysis)
    desired = observed.desired_revision
    if state.stable_revision is None:
        # First deployment: nothing to compare with, nothing to drain.
        first = RolloutState(stable_revision=desired)
        return make_decision(
            ctx,
            ActionKind.NONE,
            first,
            ProgressingReason.ROLLOUT_COMPLETED,
            f"revision {desired} deployed",
            request_handled=observed.request is not None,
        )

    if state.draining_revision is not None:
        return _drain(ctx, state)
    return _answered(_next(ctx, state), observed.request)


def _next(ctx: Context, state: RolloutState) -> Decision:
    """The decision when nothing is draining."""
    desired, observed, spec = ctx.observed.desired_revision, ctx.observed, ctx.spec
    if desired == state.stable_revision:
        if state.canary_revision is None or state.abort_reason is not None:
            # Nothing in flight, or an aborted canary already out of traffic: stable is all there is.
            return _settled(ctx, RolloutState(stable_revision=desired))
        # The template went back to stable mid-rollout: stop the canary, drain it, no blame.
        reverted = drain_state(ctx, RolloutState(stable_revision=desired), state.canary_revision, delay=0)
        return make_decision(
            ctx,
            ActionKind.ROLL_BACK,
            reverted,
            ProgressingReason.ROLLED_BACK,
            f"template reverted to stable {desired}; draining {state.canary_revision}",
            requeue_after=READINESS_POLL_SECONDS,
        )

    if state.canary_revision != desired:
        return _start(ctx, state)

    request = observed.request
    if request is Request.ABORT and state.abort_reason is None:
        return roll_back(ctx, state, DegradedReason.ROLLOUT_ABORTED, "aborted by request", handled=True)
    if state.abort_reason is not None:
        if request is Request.RETRY:
            return _start(
                ctx, dataclasses.replace(state, canary_revision=None, abort_reason=None), handled=True
            )
        message = f"rolled back from {state.canary_revision}; set {ACTION_ANNOTATION}=retry to try again"
        return make_decision(
            ctx,
            ActionKind.NONE,
            state,
            ProgressingReason.ROLLED_BACK,
            message,
            request_handled=request is not None,
        )
    if request is Request.PROMOTE_FULL:
        return promote(ctx, state, "promoted by request", handled=True)

    if spec.strategy is RolloutStrategy.CANARY:
        return canary_steps(ctx, state)
    if spec.strategy is RolloutStrategy.BLUE_GREEN:
        return blue_green_phases(ctx, state)
    return rolling_update(ctx, state)


def _answered(decision: Decision, request: Request | None) -> Decision:
    """Every request is answered once; one that does not apply now is dropped with a note."""
    if request is None or decision.request_handled:
        return decision
    message = f"{decision.message}; {request} does not apply now"
    return dataclasses.replace(decision, message=message, request_handled=True)


def _settled(ctx: Context, state: RolloutState) -> Decision:
    message = f"revision {state.stable_revision} is stable"
    if ctx.observed.request is not None:
        message += f"; {ctx.observed.request} ignored: no rollout in progress"
    return make_decision(
        ctx,
        ActionKind.NONE,
        state,
        ProgressingReason.ROLLOUT_COMPLETED,
        message,
        request_handled=ctx.observed.request is not None,
    )


def _start(ctx: Context, state: RolloutState, *, handled: bool = False) -> Decision:
    """A new revision appeared (or a retry): step 0 of the strategy."""
    desired = ctx.observed.desired_revision
    fresh = RolloutState(
        stable_revision=state.stable_revision, canary_revision=desired, step_started_at=ctx.now
    )
    if state.canary_revision is not None and state.abort_reason is None:
        # A newer template supersedes the canary in flight; its Pods drain like after a rollback.
        fresh = drain_state(ctx, fresh, state.canary_revision, delay=0)
        return make_decision(
            ctx,
            ActionKind.ROLL_BACK,
            fresh,
            ProgressingReason.DRAINING_PREVIOUS,
            f"{desired} supersedes {state.canary_revision}; draining it first",
            requeue_after=READINESS_POLL_SECONDS,
            request_handled=handled,
        )
    if ctx.spec.strategy is RolloutStrategy.ROLLING:
        return rolling_update(ctx, fresh, handled=handled)
    if ctx.spec.strategy is RolloutStrategy.BLUE_GREEN:
        return make_decision(
            ctx,
            ActionKind.DEPLOY_PREVIEW,
            fresh,
            ProgressingReason.PREVIEW_PROGRESSING,
            f"previewing {desired}",
            requeue_after=READINESS_POLL_SECONDS,
            request_handled=handled,
        )
    decision = canary_steps(ctx, fresh)
    return dataclasses.replace(decision, request_handled=handled or decision.request_handled)


def _drain(ctx: Context, state: RolloutState) -> Decision:
    """A revision is draining: hold everything else until it is gone.

    Requests other than ``retry`` of an aborted canary stay in the annotation
    (``request_handled`` is false) and are acted on once the drain is over.
    """
    revision = state.draining_revision
    not_before = ctx.now if state.drain_not_before is None else state.drain_not_before
    deadline = not_before if state.drain_deadline is None else state.drain_deadline
    reason = ProgressingReason.ROLLED_BACK if state.abort_reason else ProgressingReason.DRAINING_PREVIOUS
    request = ctx.observed.request
    if (
        state.abort_reason is not None
        and request is Request.RETRY
        and revision == state.canary_revision == ctx.observed.desired_revision
    ):
        # Retrying reuses the canary Pods that were draining.
        retried = RolloutState(stable_revision=state.stable_revision)
        return _start(ctx, retried, handled=True)
    note = "" if request is None else f"; {request} waits until {revision} has drained"
    if ctx.now < not_before:
        remaining = not_before - ctx.now
        message = f"{revision} stays up {remaining:g} s (scaleDownDelaySeconds) before draining{note}"
        return make_decision(ctx, ActionKind.NONE, state, reason, message, requeue_after=remaining)
    if ctx.observed.previous_drained or ctx.now >= deadline:
        why = "drained" if ctx.observed.previous_drained else "out of drain time"
        done = dataclasses.replace(
            state,
            draining_revision=None,
            drain_not_before=None,
            drain_deadline=None,
            # A rollout that waited for this drain starts its first step now.
            step_started_at=ctx.now if state.canary_revision and not state.abort_reason else None,
        )
        message = f"{revision} {why}, scaled down"
        if state.abort_reason is not None:
            return make_decision(ctx, ActionKind.SCALE_DOWN_PREVIOUS, done, reason, message)
        if ctx.observed.desired_revision == done.stable_revision and done.canary_revision is None:
            return make_decision(
                ctx, ActionKind.SCALE_DOWN_PREVIOUS, done, ProgressingReason.ROLLOUT_COMPLETED, message
            )
        # Another revision is waiting (a newer template arrived meanwhile): ask again at once.
        message += f"; {ctx.observed.desired_revision} starts next"
        return make_decision(ctx, ActionKind.SCALE_DOWN_PREVIOUS, done, reason, message, requeue_after=0.0)
    message = f"draining {revision} (deadline in {deadline - ctx.now:g} s){note}"
    return make_decision(
        ctx, ActionKind.DRAIN_PREVIOUS, state, reason, message, requeue_after=READINESS_POLL_SECONDS
    )
