"""The ``Ready`` condition: every component serves (pure).

Judged on :class:`~resonance_operator.status.facts.Facts` alone; the first reason
that holds the cluster back names the condition, the message lists them all.
"""

from __future__ import annotations

from typing import Any

from resonance_operator.api.conditions import ConditionStatus, ConditionType, Reason
from resonance_operator.status.conditions import Stamp
from resonance_operator.status.facts import Facts


def condition(facts: Facts, stamp: Stamp) -> dict[str, Any]:
    if facts.not_ready:
        reason, _ = facts.not_ready[0]
        return stamp(ConditionType.READY, ConditionStatus.FALSE, reason, facts.not_ready_message)
    return stamp(
        ConditionType.READY, ConditionStatus.TRUE, Reason.ALL_COMPONENTS_READY, "all components are ready"
    )
