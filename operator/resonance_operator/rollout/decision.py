"""The vocabulary of the step machine's answers, and the decisions every strategy shares.

Pure. :class:`Observed` is what :func:`~resonance_operator.rollout.plan.decide` is
told, :class:`Decision` what it answers: one :class:`ActionKind` for the caller to
carry out, the :class:`~resonance_operator.rollout.state.RolloutState` to store, the
``Progressing`` reason and message, and when to ask again. :func:`promote` and
:func:`roll_back` are the two ways a rollout ends (the losing revision drains in both);
:mod:`~resonance_operator.rollout.strategies` and :mod:`~resonance_operator.rollout.plan`
build every other decision through :func:`make_decision`.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from resonance_operator.api.conditions import DegradedReason, EventType, ProgressingReason
from resonance_operator.api.spec import RolloutSpec, RolloutStrategy
from resonance_operator.rollout.analysis import AnalysisSpec
from resonance_operator.rollout.request import Request
from resonance_operator.rollout.state import RolloutState

READINESS_POLL_SECONDS = 5.0

BLUE_GREEN_PREVIEW, BLUE_GREEN_ANALYSIS, BLUE_GREEN_PROMOTION = 0, 1, 2
BLUE_GREEN_STEPS = ("preview", "analysis", "promotion")


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
    """A measurement is due: scrape, :func:`~resonance_operator.rollout.analysis.measure`, then
    :func:`~resonance_operator.rollout.state.record`."""
    PROMOTE = "Promote"
    """The new revision becomes stable and takes all new connections; the old one starts draining."""
    ROLL_BACK = "RollBack"
    """New connections go to stable now; the canary keeps its Pods until drained."""
    DRAIN_PREVIOUS = "DrainPrevious"
    """Keep the draining revision out of new traffic while its Pods hand clients over."""
    SCALE_DOWN_PREVIOUS = "ScaleDownPrevious"
    """The draining revision is drained (or out of time): scale it to zero."""


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
class Context:
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
        return BLUE_GREEN_STEPS[min(state.step_index, BLUE_GREEN_PROMOTION)]
    return "rolling"


def make_decision(
    ctx: Context, action: ActionKind, state: RolloutState, reason: ProgressingReason, message: str, **kw: Any
) -> Decision:
    degraded = kw.pop("degraded", state.abort_reason)
    return Decision(
        action, state, reason, message, degraded=degraded, step=_step_label(ctx.spec, state), **kw
    )


def advance(state: RolloutState, now: float) -> RolloutState:
    return dataclasses.replace(state, step_index=state.step_index + 1, step_started_at=now, analysis=None)


def drain_state(ctx: Context, state: RolloutState, revision: str, *, delay: int) -> RolloutState:
    not_before = ctx.now + delay
    return dataclasses.replace(
        state,
        draining_revision=revision,
        drain_not_before=not_before,
        drain_deadline=not_before + ctx.spec.drain.max_drain_seconds,
    )


def promote(ctx: Context, state: RolloutState, why: str, *, handled: bool = False) -> Decision:
    new, old = state.canary_revision, state.stable_revision
    assert new is not None
    assert old is not None
    delay = (
        ctx.spec.blue_green.scale_down_delay_seconds
        if ctx.spec.blue_green and ctx.spec.strategy is RolloutStrategy.BLUE_GREEN
        else 0
    )
    promoted = drain_state(ctx, RolloutState(stable_revision=new), old, delay=delay)
    message = f"{why}: {new} is stable; {old} drains"
    event = Event(EventType.NORMAL, "RolloutPromoted", message)
    return make_decision(
        ctx,
        ActionKind.PROMOTE,
        promoted,
        ProgressingReason.DRAINING_PREVIOUS,
        message,
        event=event,
        request_handled=handled,
        requeue_after=READINESS_POLL_SECONDS,
    )


def roll_back(
    ctx: Context, state: RolloutState, reason: DegradedReason, why: str, *, handled: bool
) -> Decision:
    canary = state.canary_revision
    assert canary is not None
    rolled = drain_state(
        ctx, dataclasses.replace(state, weight=0, abort_reason=reason, analysis=None), canary, delay=0
    )
    message = f"{why}; new connections go to {state.stable_revision}, {canary} drains"
    event = Event(EventType.WARNING, reason.value, message)
    return make_decision(
        ctx,
        ActionKind.ROLL_BACK,
        rolled,
        ProgressingReason.ROLLED_BACK,
        message,
        event=event,
        request_handled=handled,
        requeue_after=READINESS_POLL_SECONDS,
    )
