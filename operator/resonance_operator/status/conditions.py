"""Condition list helpers (``metav1.Condition`` shaped dicts)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from resonance_operator.api.conditions import (
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
    reason: Reason | ProgressingReason | DegradedReason,
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
