"""The ``Progressing`` condition: the cluster is moving towards its spec (pure).

A canary or blue-green pass says it itself (its step, or ``RolledBack``); else the
workers' own rollout, scaling and the data stores starting decide, in that order.
"""

from __future__ import annotations

from typing import Any

from resonance_operator.api.conditions import ConditionStatus, ConditionType, ProgressingReason, Reason
from resonance_operator.status.conditions import Stamp
from resonance_operator.status.facts import Facts


def condition(facts: Facts, stamp: Stamp) -> dict[str, Any]:
    rollout, workers, valid = facts.rollout, facts.workers, not facts.invalid
    if rollout is not None and facts.rollout_reported and valid:
        if rollout.progressing:
            return stamp(ConditionType.PROGRESSING, ConditionStatus.TRUE, rollout.reason, rollout.message)
        if rollout.reason is ProgressingReason.ROLLED_BACK:
            return stamp(ConditionType.PROGRESSING, ConditionStatus.FALSE, rollout.reason, rollout.message)
    if not facts.workers_exist and valid:
        return stamp(
            ConditionType.PROGRESSING,
            ConditionStatus.TRUE,
            Reason.CREATING,
            "creating the cluster's children",
        )
    if facts.workloads_applied or not workers.rolled_out:
        return stamp(
            ConditionType.PROGRESSING,
            ConditionStatus.TRUE,
            Reason.WORKERS_UPDATING,
            f"rolling out workers: updated {workers.updated}/{workers.desired}",
        )
    if workers.ready < workers.desired:
        return stamp(
            ConditionType.PROGRESSING,
            ConditionStatus.TRUE,
            Reason.WORKERS_SCALING,
            f"workers ready {workers.display}",
        )
    if facts.not_ready:
        return stamp(
            ConditionType.PROGRESSING,
            ConditionStatus.TRUE,
            Reason.COMPONENTS_STARTING,
            facts.not_ready_message,
        )
    return stamp(
        ConditionType.PROGRESSING, ConditionStatus.FALSE, Reason.RECONCILED, "the cluster matches its spec"
    )
