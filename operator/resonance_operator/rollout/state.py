"""What the rollout machine remembers between passes: :class:`RolloutState`, kept in ``status.rollout``.

Pure. Nothing else is remembered across operator restarts (the analysis baseline
scrape is the rollout pass's memory and is simply taken again), so a rollout
continues from this state wherever the operator stopped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from resonance_operator.api.conditions import DegradedReason
from resonance_operator.rollout.analysis import AnalysisRun, Measurement


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


def record(state: RolloutState, measurement: Measurement, now: float) -> RolloutState:
    """The state after the reconciler took the measurement a ``MEASURE`` decision asked for."""
    if state.analysis is None:
        raise ValueError("no analysis run in progress")
    return dataclasses.replace(state, analysis=state.analysis.record(measurement, now))
