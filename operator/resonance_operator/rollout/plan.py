"""The rollout step machine: given the spec, what was recorded and ``now``, what next.

:func:`decide` is pure. The reconciler feeds it the ``rollout`` section of the
spec, the :class:`RolloutState` it stored in ``status.rollout`` last time, what it
:class:`Observed` (the revision the worker template hashes to, whether the new
revision's Pods are ready, whether the old revision has drained, and a request
read from the ``resonance.liminal.dev/rollout-action`` annotation). It gets back a
:class:`Decision`: one action to take, the state to store, the ``Progressing``
reason (the step of the machine is that reason plus ``stepIndex``), an optional
``Degraded`` reason and Event, and how long to wait before asking again. Nothing
sleeps, so a rollout survives an operator restart at any point.

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
import enum
from collections.abc import Mapping
from typing import Any

import pydantic

from resonance_operator.api.conditions import DegradedReason as DegradedReason  # re-exported
from resonance_operator.api.conditions import EventType
from resonance_operator.api.conditions import ProgressingReason as ProgressingReason  # re-exported
from resonance_operator.api.spec import CanaryStep, RolloutSpec, RolloutStrategy
from resonance_operator.rollout.analysis import AnalysisRun, AnalysisSpec, Measurement, Verdict

ACTION_ANNOTATION = "resonance.liminal.dev/rollout-action"
READINESS_POLL_SECONDS = 5.0

BLUE_GREEN_PREVIEW, BLUE_GREEN_ANALYSIS, BLUE_GREEN_PROMOTION = 0, 1, 2
_BLUE_GREEN_STEPS = ("preview", "analysis", "promotion")


class Request(enum.StrEnum):
    """Values of the ``resonance.liminal.dev/rollout-action`` annotation."""

    PROMOTE = "promote"
    """Finish the current step now (end a pause, accept an inconclusive analysis, promote a preview)."""
    PROMOTE_FULL = "promote-full"
    """Skip every remaining step and promote."""
    ABORT = "abort"
    """Roll back: new connections go to stable at once, the canary drains."""
    RETRY = "retry"
    """Start an aborted rollout again from its first step, or rerun an inconclusive analysis."""


class UnknownRequestError(ValueError):
    """The annotation holds a value that is not a :class:`Request`."""


def parse_request(annotations: Mapping[str, str] | None) -> Request | None:
    """The request in the annotation, if any.

    >>> parse_request({ACTION_ANNOTATION: " Promote "})
    <Request.PROMOTE: 'promote'>
    """
    raw = (annotations or {}).get(ACTION_ANNOTATION)
    if raw is None or not raw.strip():
        return None
    try:
        return Request(raw.strip().lower())
    except ValueError:
        allowed = ", ".join(r.value for r in Request)
        raise UnknownRequestError(f"{ACTION_ANNOTATION}: {raw!r} is not one of {allowed}") from None


class ActionKind(enum.StrEnum):
    NONE = "None"
    """Nothing to change; ask again after ``requeue_after`` (if any)."""
    ROLLING_UPDATE = "RollingUpdate"
    """Put the new template on the worker Deployment (its own rolling update)."""
    SET_WEIGHT = "SetWeight"
    """Steer ``weight`` % of new connections (and replicas) to the canary."""
    DEPLOY_PREVIEW = "DeployPreview"
    """Run the new revision behind the preview Service only."""
    START_ANALYSIS = "StartAnalysis"
    """Take the first scrape of an analysis run (no verdict yet)."""
    MEASURE = "Measure"
    """A measurement is due: scrape, :func:`~resonance_operator.rollout.analysis.measure`, :func:`record`."""
    PROMOTE = "Promote"
    """The new revision becomes stable and takes all new connections; the old one starts draining."""
    ROLL_BACK = "RollBack"
    """New connections go to stable now; the canary keeps its Pods until drained."""
    DRAIN_PREVIOUS = "DrainPrevious"
    """Keep the draining revision out of new traffic while its Pods hand clients over."""
    SCALE_DOWN_PREVIOUS = "ScaleDownPrevious"
    """The draining revision is drained (or out of time): scale it to zero."""


@dataclasses.dataclass(frozen=True)
class RolloutState:
    """What the machine remembers between calls; stored in ``status.rollout``.

    :meth:`to_status` uses the CRD's names where it has them (``currentStep``,
    ``canaryWeight``, ``stableRevision``, ``updateRevision`` feed the printer
    columns); the rest rides on ``x-kubernetes-preserve-unknown-fields``.
    """

    stable_revision: str | None = None
    canary_revision: str | None = None
    step_index: int = 0
    step_started_at: float | None = None
    weight: int = 0
    abort_reason: DegradedReason | None = None
    analysis: AnalysisRun | None = None
    draining_revision: str | None = None
    drain_not_before: float | None = None
    drain_deadline: float | None = None

    def to_status(self) -> dict[str, Any]:
        return {
            "stableRevision": self.stable_revision,
            "updateRevision": self.canary_revision,
            "currentStep": self.step_index,
            "stepStartedAt": self.step_started_at,
            "canaryWeight": self.weight,
            "abortReason": None if self.abort_reason is None else self.abort_reason.value,
            "analysis": None if self.analysis is None else self.analysis.to_status(),
            "drainingRevision": self.draining_revision,
            "drainNotBefore": self.drain_not_before,
            "drainDeadline": self.drain_deadline,
        }

    @classmethod
    def from_status(cls, data: Mapping[str, Any] | None) -> RolloutState:
        data = data or {}

        def number(key: str) -> float | None:
            value = data.get(key)
            return None if value is None else float(value)

        abort = data.get("abortReason")
        analysis = data.get("analysis")
        return cls(
            stable_revision=data.get("stableRevision"),
            canary_revision=data.get("updateRevision"),
            step_index=int(data.get("currentStep", 0)),
            step_started_at=number("stepStartedAt"),
            weight=int(data.get("canaryWeight", 0)),
            abort_reason=None if abort is None else DegradedReason(abort),
            analysis=None if analysis is None else AnalysisRun.from_status(analysis),
            draining_revision=data.get("drainingRevision"),
            drain_not_before=number("drainNotBefore"),
            drain_deadline=number("drainDeadline"),
        )


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


def record(state: RolloutState, measurement: Measurement, now: float) -> RolloutState:
    """The state after the reconciler took the measurement a ``MEASURE`` decision asked for."""
    if state.analysis is None:
        raise ValueError("no analysis run in progress")
    return dataclasses.replace(state, analysis=state.analysis.record(measurement, now))


@dataclasses.dataclass(frozen=True)
class Observed:
    """What the reconciler saw this time."""

    desired_revision: str
    """Hash of the worker template in the spec (what should end up stable)."""
    canary_ready: bool = False
    """The new revision's Pods are available at the count its weight (or preview) asks for."""
    previous_drained: bool = False
    """Every Pod of the draining revision is under the drain threshold."""
    request: Request | None = None


@dataclasses.dataclass(frozen=True)
class Event:
    type: EventType
    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class Decision:
    action: ActionKind
    state: RolloutState
    reason: ProgressingReason
    message: str
    requeue_after: float | None = None
    degraded: DegradedReason | None = None
    event: Event | None = None
    request_handled: bool = False
    """The reconciler should remove the annotation (it was acted on, or ignored with a message)."""
    analysis: AnalysisSpec | None = None
    """The analysis a ``START_ANALYSIS``/``MEASURE`` action runs."""
    step: str = ""
    """Human text: ``"2/5"`` (1-based) for canary, the phase name for blue-green.
    The printer column reads the 0-based ``currentStep`` of the status instead."""

    @property
    def progressing(self) -> bool:
        return self.reason not in (ProgressingReason.ROLLOUT_COMPLETED, ProgressingReason.ROLLED_BACK)

    @property
    def weights(self) -> dict[str, int]:
        return {"stable": 100 - self.state.weight, "canary": self.state.weight}


@dataclasses.dataclass(frozen=True)
class _Context:
    spec: RolloutSpec
    observed: Observed
    now: float
    pre_promotion_analysis: AnalysisSpec | None


def _step_label(spec: RolloutSpec, state: RolloutState) -> str:
    if state.canary_revision is None:
        return ""
    if spec.strategy is RolloutStrategy.CANARY:
        total = len(spec.canary.steps) if spec.canary else 0
        return f"{min(state.step_index + 1, total)}/{total}"
    if spec.strategy is RolloutStrategy.BLUE_GREEN:
        return _BLUE_GREEN_STEPS[min(state.step_index, BLUE_GREEN_PROMOTION)]
    return "rolling"


def _decision(
    ctx: _Context, action: ActionKind, state: RolloutState, reason: ProgressingReason, message: str, **kw: Any
) -> Decision:
    degraded = kw.pop("degraded", state.abort_reason)
    return Decision(
        action, state, reason, message, degraded=degraded, step=_step_label(ctx.spec, state), **kw
    )


def _advance(state: RolloutState, now: float) -> RolloutState:
    return dataclasses.replace(state, step_index=state.step_index + 1, step_started_at=now, analysis=None)


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
    ctx = _Context(spec, observed, now, pre_promotion_analysis)
    desired = observed.desired_revision
    if state.stable_revision is None:
        # First deployment: nothing to compare with, nothing to drain.
        first = RolloutState(stable_revision=desired)
        return _decision(
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


def _next(ctx: _Context, state: RolloutState) -> Decision:
    """The decision when nothing is draining."""
    desired, observed, spec = ctx.observed.desired_revision, ctx.observed, ctx.spec
    if desired == state.stable_revision:
        if state.canary_revision is None or state.abort_reason is not None:
            # Nothing in flight, or an aborted canary already out of traffic: stable is all there is.
            return _settled(ctx, RolloutState(stable_revision=desired))
        # The template went back to stable mid-rollout: stop the canary, drain it, no blame.
        reverted = _drain_state(ctx, RolloutState(stable_revision=desired), state.canary_revision, delay=0)
        return _decision(
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
        return _roll_back(ctx, state, DegradedReason.ROLLOUT_ABORTED, "aborted by request", handled=True)
    if state.abort_reason is not None:
        if request is Request.RETRY:
            return _start(
                ctx, dataclasses.replace(state, canary_revision=None, abort_reason=None), handled=True
            )
        message = f"rolled back from {state.canary_revision}; set {ACTION_ANNOTATION}=retry to try again"
        return _decision(
            ctx,
            ActionKind.NONE,
            state,
            ProgressingReason.ROLLED_BACK,
            message,
            request_handled=request is not None,
        )
    if request is Request.PROMOTE_FULL:
        return _promote(ctx, state, "promoted by request", handled=True)

    if spec.strategy is RolloutStrategy.CANARY:
        return _canary(ctx, state)
    if spec.strategy is RolloutStrategy.BLUE_GREEN:
        return _blue_green(ctx, state)
    return _rolling(ctx, state)


def _answered(decision: Decision, request: Request | None) -> Decision:
    """Every request is answered once; one that does not apply now is dropped with a note."""
    if request is None or decision.request_handled:
        return decision
    message = f"{decision.message}; {request} does not apply now"
    return dataclasses.replace(decision, message=message, request_handled=True)


def _settled(ctx: _Context, state: RolloutState) -> Decision:
    message = f"revision {state.stable_revision} is stable"
    if ctx.observed.request is not None:
        message += f"; {ctx.observed.request} ignored: no rollout in progress"
    return _decision(
        ctx,
        ActionKind.NONE,
        state,
        ProgressingReason.ROLLOUT_COMPLETED,
        message,
        request_handled=ctx.observed.request is not None,
    )


def _start(ctx: _Context, state: RolloutState, *, handled: bool = False) -> Decision:
    """A new revision appeared (or a retry): step 0 of the strategy."""
    desired = ctx.observed.desired_revision
    fresh = RolloutState(
        stable_revision=state.stable_revision, canary_revision=desired, step_started_at=ctx.now
    )
    if state.canary_revision is not None and state.abort_reason is None:
        # A newer template supersedes the canary in flight; its Pods drain like after a rollback.
        fresh = _drain_state(ctx, fresh, state.canary_revision, delay=0)
        return _decision(
            ctx,
            ActionKind.ROLL_BACK,
            fresh,
            ProgressingReason.DRAINING_PREVIOUS,
            f"{desired} supersedes {state.canary_revision}; draining it first",
            requeue_after=READINESS_POLL_SECONDS,
            request_handled=handled,
        )
    if ctx.spec.strategy is RolloutStrategy.ROLLING:
        return _rolling(ctx, fresh, handled=handled)
    if ctx.spec.strategy is RolloutStrategy.BLUE_GREEN:
        return _decision(
            ctx,
            ActionKind.DEPLOY_PREVIEW,
            fresh,
            ProgressingReason.PREVIEW_PROGRESSING,
            f"previewing {desired}",
            requeue_after=READINESS_POLL_SECONDS,
            request_handled=handled,
        )
    decision = _canary(ctx, fresh)
    return dataclasses.replace(decision, request_handled=handled or decision.request_handled)


def _rolling(ctx: _Context, state: RolloutState, *, handled: bool = False) -> Decision:
    if ctx.observed.canary_ready:
        done = RolloutState(stable_revision=state.canary_revision)
        return _decision(
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
    return _decision(
        ctx,
        ActionKind.ROLLING_UPDATE,
        state,
        ProgressingReason.ROLLING_UPDATE,
        message,
        requeue_after=READINESS_POLL_SECONDS,
        request_handled=handled,
    )


def _canary(ctx: _Context, state: RolloutState) -> Decision:
    steps: list[CanaryStep] = ctx.spec.canary.steps if ctx.spec.canary else []
    request = ctx.observed.request
    handled = False
    if request is Request.PROMOTE and state.step_index < len(steps):
        state, handled = _advance(state, ctx.now), True
    while state.step_index < len(steps):
        step = steps[state.step_index]
        started = ctx.now if state.step_started_at is None else state.step_started_at
        number = f"step {state.step_index + 1}/{len(steps)}"
        if step.set_weight is not None:
            if state.weight != step.set_weight:
                state = dataclasses.replace(state, weight=step.set_weight)
                return _decision(
                    ctx,
                    ActionKind.SET_WEIGHT,
                    state,
                    ProgressingReason.CANARY_STEP_PROGRESSING,
                    f"{number}: weight {step.set_weight}%",
                    requeue_after=READINESS_POLL_SECONDS,
                    request_handled=handled,
                )
            if not ctx.observed.canary_ready:
                return _decision(
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
                return _decision(
                    ctx,
                    ActionKind.NONE,
                    state,
                    ProgressingReason.ROLLOUT_PAUSED,
                    message,
                    request_handled=handled,
                )
            remaining = started + duration - ctx.now
            if remaining > 0:
                return _decision(
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
        state = _advance(state, ctx.now)
    return _promote(ctx, state, f"all {len(steps)} steps passed", handled=handled)


def _start_analysis(
    ctx: _Context,
    state: RolloutState,
    spec: AnalysisSpec,
    reason: ProgressingReason,
    message: str,
    *,
    handled: bool,
) -> Decision:
    """A fresh analysis run: its first scrape now, the first measurement one interval later."""
    state = dataclasses.replace(state, analysis=AnalysisRun(started_at=ctx.now))
    return _decision(
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
    ctx: _Context, state: RolloutState, raw: Mapping[str, Any] | AnalysisSpec, label: str, handled: bool
) -> Decision | None:
    """A decision while the analysis of the current step runs, ``None`` once it passed."""
    try:
        spec = raw if isinstance(raw, AnalysisSpec) else AnalysisSpec.model_validate(raw)
    except pydantic.ValidationError as error:
        message = f"{label}: invalid analysis: {error.errors()[0]['loc']}: {error.errors()[0]['msg']}"
        return _decision(
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
        return _roll_back(
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
        return _decision(
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
    return _decision(
        ctx,
        action,
        state,
        reason,
        f"{label}: analysis running ({summary})",
        requeue_after=requeue,
        analysis=spec,
        request_handled=handled,
    )


def _blue_green(ctx: _Context, state: RolloutState) -> Decision:
    options = ctx.spec.blue_green
    request = ctx.observed.request
    index = state.step_index
    if index == BLUE_GREEN_PREVIEW:
        if not ctx.observed.canary_ready:
            return _decision(
                ctx,
                ActionKind.DEPLOY_PREVIEW,
                state,
                ProgressingReason.PREVIEW_PROGRESSING,
                f"waiting for preview {state.canary_revision}",
                requeue_after=READINESS_POLL_SECONDS,
            )
        state = _advance(state, ctx.now)
    if state.step_index == BLUE_GREEN_ANALYSIS:
        if request is Request.PROMOTE:
            return _promote(ctx, state, "promoted by request before analysis ended", handled=True)
        if ctx.pre_promotion_analysis is not None:
            outcome = _analysis(ctx, state, ctx.pre_promotion_analysis, "pre-promotion", handled=False)
            if outcome is not None:
                return outcome
        state = _advance(state, ctx.now)
    if request is Request.PROMOTE:
        return _promote(ctx, state, "promoted by request", handled=True)
    if options is not None and options.auto_promotion_enabled:
        delay = options.auto_promotion_seconds or 0
        started = ctx.now if state.step_started_at is None else state.step_started_at
        remaining = started + delay - ctx.now
        if remaining <= 0:
            return _promote(ctx, state, "auto-promoted")
        return _decision(
            ctx,
            ActionKind.NONE,
            state,
            ProgressingReason.ROLLOUT_PAUSED,
            f"auto-promotion in {remaining:g} s",
            requeue_after=remaining,
        )
    message = f"preview {state.canary_revision} ready; set {ACTION_ANNOTATION}=promote"
    return _decision(ctx, ActionKind.NONE, state, ProgressingReason.ROLLOUT_PAUSED, message)


def _drain_state(ctx: _Context, state: RolloutState, revision: str, *, delay: int) -> RolloutState:
    not_before = ctx.now + delay
    return dataclasses.replace(
        state,
        draining_revision=revision,
        drain_not_before=not_before,
        drain_deadline=not_before + ctx.spec.drain.max_drain_seconds,
    )


def _promote(ctx: _Context, state: RolloutState, why: str, *, handled: bool = False) -> Decision:
    new, old = state.canary_revision, state.stable_revision
    assert new is not None
    assert old is not None
    delay = (
        ctx.spec.blue_green.scale_down_delay_seconds
        if ctx.spec.blue_green and ctx.spec.strategy is RolloutStrategy.BLUE_GREEN
        else 0
    )
    promoted = _drain_state(ctx, RolloutState(stable_revision=new), old, delay=delay)
    message = f"{why}: {new} is stable; {old} drains"
    event = Event(EventType.NORMAL, "RolloutPromoted", message)
    return _decision(
        ctx,
        ActionKind.PROMOTE,
        promoted,
        ProgressingReason.DRAINING_PREVIOUS,
        message,
        event=event,
        request_handled=handled,
        requeue_after=READINESS_POLL_SECONDS,
    )


def _roll_back(
    ctx: _Context, state: RolloutState, reason: DegradedReason, why: str, *, handled: bool
) -> Decision:
    canary = state.canary_revision
    assert canary is not None
    rolled = _drain_state(
        ctx, dataclasses.replace(state, weight=0, abort_reason=reason, analysis=None), canary, delay=0
    )
    message = f"{why}; new connections go to {state.stable_revision}, {canary} drains"
    event = Event(EventType.WARNING, reason.value, message)
    return _decision(
        ctx,
        ActionKind.ROLL_BACK,
        rolled,
        ProgressingReason.ROLLED_BACK,
        message,
        event=event,
        request_handled=handled,
        requeue_after=READINESS_POLL_SECONDS,
    )


def _drain(ctx: _Context, state: RolloutState) -> Decision:
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
        return _decision(ctx, ActionKind.NONE, state, reason, message, requeue_after=remaining)
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
            return _decision(ctx, ActionKind.SCALE_DOWN_PREVIOUS, done, reason, message)
        if ctx.observed.desired_revision == done.stable_revision and done.canary_revision is None:
            return _decision(
                ctx, ActionKind.SCALE_DOWN_PREVIOUS, done, ProgressingReason.ROLLOUT_COMPLETED, message
            )
        # Another revision is waiting (a newer template arrived meanwhile): ask again at once.
        message += f"; {ctx.observed.desired_revision} starts next"
        return _decision(ctx, ActionKind.SCALE_DOWN_PREVIOUS, done, reason, message, requeue_after=0.0)
    message = f"draining {revision} (deadline in {deadline - ctx.now:g} s){note}"
    return _decision(
        ctx, ActionKind.DRAIN_PREVIOUS, state, reason, message, requeue_after=READINESS_POLL_SECONDS
    )
