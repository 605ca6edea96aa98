"""The steps of each strategy while a new revision is in flight: canary, blue-green, rolling.

Pure. :func:`~resonance_operator.rollout.plan.decide` calls one of these once it
knows a rollout is in flight and nothing is draining. To add a kind of canary step,
give :class:`~resonance_operator.api.spec.CanaryStep` (and the CRD) its field and add
a branch to :func:`canary_steps`; a step that is not finished returns its
:class:`~resonance_operator.rollout.decision.Decision`, a finished one falls through
to the next.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import pydantic

from resonance_operator.api.conditions import DegradedReason, ProgressingReason
from resonance_operator.api.spec import CanaryStep, RolloutStrategy
from resonance_operator.rollout.analysis import AnalysisRun, AnalysisSpec, Verdict
from resonance_operator.rollout.decision import (
    BLUE_GREEN_ANALYSIS,
    BLUE_GREEN_PREVIEW,
    READINESS_POLL_SECONDS,
    ActionKind,
    Context,
    Decision,
    advance,
    make_decision,
    promote,
    roll_back,
)
from resonance_operator.rollout.request import ACTION_ANNOTATION, Request
from resonance_operator.rollout.state import RolloutState


def rolling_update(ctx: Context, state: RolloutState, *, handled: bool = False) -> Decision:
    if ctx.observed.canary_ready:
        done = RolloutState(stable_revision=state.canary_revision)
        return make_decision(
            ctx,
            ActionKind.NONE,
            done,
            ProgressingReason.ROLLOUT_COMPLETED,
            f"rolled out {state.canary_revision}",
            request_handled=handled,
        )
    rolling = ctx.spec.rolling
    message = (
        f"rolling update to {state.canary_revision}"
        f" (maxSurge {rolling.max_surge}, maxUnavailable {rolling.max_unavailable})"
    )
    return make_decision(
        ctx,
        ActionKind.ROLLING_UPDATE,
        state,
        ProgressingReason.ROLLING_UPDATE,
        message,
        requeue_after=READINESS_POLL_SECONDS,
        request_handled=handled,
    )


def canary_steps(ctx: Context, state: RolloutState) -> Decision:
    steps: list[CanaryStep] = ctx.spec.canary.steps if ctx.spec.canary else []
    request = ctx.observed.request
    handled = False
    if request is Request.PROMOTE and state.step_index < len(steps):
        state, handled = advance(state, ctx.now), True
    while state.step_index < len(steps):
        step = steps[state.step_index]
        started = ctx.now if state.step_started_at is None else state.step_started_at
        number = f"step {state.step_index + 1}/{len(steps)}"
        if step.set_weight is not None:
            if state.weight != step.set_weight:
                state = dataclasses.replace(state, weight=step.set_weight)
                return make_decision(
                    ctx,
                    ActionKind.SET_WEIGHT,
                    state,
                    ProgressingReason.CANARY_STEP_PROGRESSING,
                    f"{number}: weight {step.set_weight}%",
                    requeue_after=READINESS_POLL_SECONDS,
                    request_handled=handled,
                )
            if not ctx.observed.canary_ready:
                return make_decision(
                    ctx,
                    ActionKind.NONE,
                    state,
                    ProgressingReason.CANARY_STEP_PROGRESSING,
                    f"{number}: waiting for canary Pods at {state.weight}%",
                    requeue_after=READINESS_POLL_SECONDS,
                    request_handled=handled,
                )
        elif step.pause is not None:
            duration = step.pause.duration_seconds
            if duration is None:
                message = f"{number}: paused until {ACTION_ANNOTATION}=promote"
                return make_decision(
                    ctx,
                    ActionKind.NONE,
                    state,
                    ProgressingReason.ROLLOUT_PAUSED,
                    message,
                    request_handled=handled,
                )
            remaining = started + duration - ctx.now
            if remaining > 0:
                return make_decision(
                    ctx,
                    ActionKind.NONE,
                    state,
                    ProgressingReason.ROLLOUT_PAUSED,
                    f"{number}: paused, {remaining:g} s left",
                    requeue_after=remaining,
                    request_handled=handled,
                )
        elif step.analysis is not None:
            outcome = _analysis(ctx, state, step.analysis, number, handled)
            if outcome is not None:
                return outcome
        state = advance(state, ctx.now)
    return promote(ctx, state, f"all {len(steps)} steps passed", handled=handled)


def _start_analysis(
    ctx: Context,
    state: RolloutState,
    spec: AnalysisSpec,
    reason: ProgressingReason,
    message: str,
    *,
    handled: bool,
) -> Decision:
    """A fresh analysis run: its first scrape now, the first measurement one interval later."""
    state = dataclasses.replace(state, analysis=AnalysisRun(started_at=ctx.now))
    return make_decision(
        ctx,
        ActionKind.START_ANALYSIS,
        state,
        reason,
        message,
        requeue_after=float(spec.interval_seconds),
        analysis=spec,
        request_handled=handled,
    )


def _analysis(
    ctx: Context, state: RolloutState, raw: Mapping[str, Any] | AnalysisSpec, label: str, handled: bool
) -> Decision | None:
    """A decision while the analysis of the current step runs, ``None`` once it passed."""
    try:
        spec = raw if isinstance(raw, AnalysisSpec) else AnalysisSpec.model_validate(raw)
    except pydantic.ValidationError as error:
        message = f"{label}: invalid analysis: {error.errors()[0]['loc']}: {error.errors()[0]['msg']}"
        return make_decision(
            ctx,
            ActionKind.NONE,
            state,
            ProgressingReason.ROLLOUT_PAUSED,
            message,
            degraded=DegradedReason.INVALID_ROLLOUT_SPEC,
            request_handled=handled,
        )
    reason = (
        ProgressingReason.CANARY_STEP_PROGRESSING
        if ctx.spec.strategy is RolloutStrategy.CANARY
        else ProgressingReason.PREVIEW_PROGRESSING
    )
    run = state.analysis
    if run is None:
        return _start_analysis(ctx, state, spec, reason, f"{label}: analysis started", handled=handled)
    verdict = run.verdict(spec)
    summary = f"{run.measurements} measured, {run.failures} failed, {run.inconclusive} inconclusive"
    if verdict is Verdict.SUCCESSFUL:
        return None
    if verdict is Verdict.FAILED:
        return roll_back(
            ctx,
            state,
            DegradedReason.ANALYSIS_FAILED,
            f"{label}: analysis failed ({summary}): {run.last_message}",
            handled=handled,
        )
    if verdict is Verdict.INCONCLUSIVE:
        if ctx.observed.request is Request.RETRY:
            return _start_analysis(ctx, state, spec, reason, f"{label}: analysis restarted", handled=True)
        message = f"{label}: analysis inconclusive ({summary}); promote, retry or abort"
        return make_decision(
            ctx,
            ActionKind.NONE,
            state,
            ProgressingReason.ROLLOUT_PAUSED,
            message,
            analysis=spec,
            request_handled=handled,
        )
    due_in = run.next_measurement_in(spec, ctx.now)
    action = ActionKind.MEASURE if due_in == 0 else ActionKind.NONE
    requeue = float(spec.interval_seconds) if due_in == 0 else due_in
    return make_decision(
        ctx,
        action,
        state,
        reason,
        f"{label}: analysis running ({summary})",
        requeue_after=requeue,
        analysis=spec,
        request_handled=handled,
    )


def blue_green_phases(ctx: Context, state: RolloutState) -> Decision:
    options = ctx.spec.blue_green
    request = ctx.observed.request
    index = state.step_index
    if index == BLUE_GREEN_PREVIEW:
        if not ctx.observed.canary_ready:
            return make_decision(
                ctx,
                ActionKind.DEPLOY_PREVIEW,
                state,
                ProgressingReason.PREVIEW_PROGRESSING,
                f"waiting for preview {state.canary_revision}",
                requeue_after=READINESS_POLL_SECONDS,
            )
        state = advance(state, ctx.now)
    if state.step_index == BLUE_GREEN_ANALYSIS:
        if request is Request.PROMOTE:
            return promote(ctx, state, "promoted by request before analysis ended", handled=True)
        if ctx.pre_promotion_analysis is not None:
            outcome = _analysis(ctx, state, ctx.pre_promotion_analysis, "pre-promotion", handled=False)
            if outcome is not None:
                return outcome
        state = advance(state, ctx.now)
    if request is Request.PROMOTE:
        return promote(ctx, state, "promoted by request", handled=True)
    if options is not None and options.auto_promotion_enabled:
        delay = options.auto_promotion_seconds or 0
        started = ctx.now if state.step_started_at is None else state.step_started_at
        remaining = started + delay - ctx.now
        if remaining <= 0:
            return promote(ctx, state, "auto-promoted")
        return make_decision(
            ctx,
            ActionKind.NONE,
            state,
            ProgressingReason.ROLLOUT_PAUSED,
            f"auto-promotion in {remaining:g} s",
            requeue_after=remaining,
        )
    message = f"preview {state.canary_revision} ready; set {ACTION_ANNOTATION}=promote"
    return make_decision(ctx, ActionKind.NONE, state, ProgressingReason.ROLLOUT_PAUSED, message)
