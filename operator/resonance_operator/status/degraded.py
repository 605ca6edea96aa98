"""The ``Degraded`` condition: something is wrong that waiting will not fix (pure).

In order: a spec the operator cannot act on, a child the API refused, a generated
Secret deleted while the workloads use it (not generated again: ``desired/secrets.py``), a rollout
that failed or was aborted (its first message is kept while the losing revision
drains), a worker Deployment past its progress deadline.
"""

from __future__ import annotations

from typing import Any

from resonance_operator.api.conditions import ConditionStatus, ConditionType, Reason
from resonance_operator.desired import secrets
from resonance_operator.status.conditions import Stamp
from resonance_operator.status.facts import Facts


def condition(facts: Facts, stamp: Stamp) -> dict[str, Any]:
    if facts.invalid:
        why = "; ".join(facts.invalid)
        return stamp(ConditionType.DEGRADED, ConditionStatus.TRUE, Reason.INVALID_SPEC, why)
    if facts.apply_error is not None:
        return stamp(ConditionType.DEGRADED, ConditionStatus.TRUE, Reason.APPLY_FAILED, facts.apply_error)
    if facts.withheld:
        message = secrets.missing_message(facts.withheld)
        return stamp(ConditionType.DEGRADED, ConditionStatus.TRUE, Reason.GENERATED_SECRET_MISSING, message)
    rollout = facts.rollout
    if rollout is not None and rollout.degraded is not None:
        # The message of the decision that degraded the rollout says why; later passes only drain.
        before = stamp.previous_of(ConditionType.DEGRADED) or {}
        kept = before.get("status") == "True" and before.get("reason") == rollout.degraded.value
        message = str(before["message"]) if kept else rollout.message
        return stamp(ConditionType.DEGRADED, ConditionStatus.TRUE, rollout.degraded, message)
    if facts.workers.deadline_exceeded:
        return stamp(
            ConditionType.DEGRADED,
            ConditionStatus.TRUE,
            Reason.PROGRESS_DEADLINE_EXCEEDED,
            "the worker Deployment exceeded its progress deadline",
        )
    return stamp(ConditionType.DEGRADED, ConditionStatus.FALSE, Reason.AS_EXPECTED, "no problems found")
