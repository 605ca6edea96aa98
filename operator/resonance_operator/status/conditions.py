"""Condition list helpers (``metav1.Condition`` shaped dicts) and the :class:`Stamp` every condition carries.

Conditions are a list keyed by ``type``: look one up with :func:`find` or
:func:`is_true`, never by its position.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from resonance_operator.api.conditions import (
    BackupReason,
    ConditionStatus,
    ConditionType,
    DegradedReason,
    ProgressingReason,
    Reason,
)


def find(conditions: Sequence[Mapping[str, Any]], type_: ConditionType) -> Mapping[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_.value), None)


def make(
    previous: Sequence[Mapping[str, Any]],
    type_: ConditionType,
    status: ConditionStatus,
    reason: Reason | ProgressingReason | DegradedReason | BackupReason,
    message: str,
    *,
    generation: int,
    now: str,
) -> dict[str, Any]:
    """A condition; ``lastTransitionTime`` is kept when its status did not change."""
    old = find(previous, type_)
    transitioned = old is None or old.get("status") != status.value or "lastTransitionTime" not in old
    return {
        "type": type_.value,
        "status": status.value,
        "reason": reason.value,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": now if transitioned else old["lastTransitionTime"],  # type: ignore[index]
    }


def is_true(conditions: Sequence[Mapping[str, Any]], type_: ConditionType) -> bool:
    found = find(conditions, type_)
    return found is not None and found.get("status") == ConditionStatus.TRUE.value


@dataclasses.dataclass(frozen=True)
class Stamp:
    """What every condition of one new status shares: the generation it describes, the time of this
    reconcile, and the previous conditions (a condition keeps its ``lastTransitionTime`` while its
    status holds). Call it to make one condition."""

    previous: Sequence[Mapping[str, Any]]
    generation: int
    now: str

    def __call__(
        self,
        type_: ConditionType,
        status: ConditionStatus,
        reason: Reason | ProgressingReason | DegradedReason | BackupReason,
        message: str,
    ) -> dict[str, Any]:
        return make(self.previous, type_, status, reason, message, generation=self.generation, now=self.now)

    def previous_of(self, type_: ConditionType) -> Mapping[str, Any] | None:
        return find(self.previous, type_)
