"""A ``ResonanceCluster``'s new status, computed from what was observed (pure).

:func:`compute` gathers the :class:`~resonance_operator.status.facts.Facts` once and
asks each condition module for its condition: :mod:`~resonance_operator.status.ready`,
:mod:`~resonance_operator.status.progressing`, :mod:`~resonance_operator.status.degraded`
and :mod:`~resonance_operator.status.monitoring` (one function each; and
:mod:`~resonance_operator.status.autoscaling`, present only while autoscaling is on, each stamped with
``observedGeneration``). To add a condition,
add its type to ``api/conditions.py``, a module here with its ``condition(facts,
stamp)``, and one line in :func:`compute`. :func:`changed` tells the caller whether
the status needs writing at all; :func:`transitions` which flips deserve an Event.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from resonance_operator.api.conditions import ConditionType, EventReason, EventType, Reason
from resonance_operator.api.observed import ChildKey, Observed
from resonance_operator.api.spec import ResonanceCluster
from resonance_operator.desired import meta, worker
from resonance_operator.status import (
    autoscaling,
    backup,
    conditions,
    degraded,
    monitoring,
    progressing,
    ready,
)
from resonance_operator.status.facts import RolloutView, gather


@dataclasses.dataclass(frozen=True)
class Transition:
    """An Event worth posting."""

    type: EventType
    reason: EventReason
    message: str


def compute(
    cluster: ResonanceCluster,
    observed: Observed,
    *,
    now: str,
    invalid: Sequence[str] = (),
    apply_error: str | None = None,
    applied: Sequence[ChildKey] = (),
    rollout: RolloutView | None = None,
    previous: Mapping[str, Any] | None = None,
    unserved: Sequence[str] = (),
    withheld: Sequence[str] = (),
    keda_served: bool = False,
) -> dict[str, Any]:
    """The full new status (the caller compares it with the old one before writing).

    ``previous`` is the status it replaces (default: the cluster's as read); its conditions keep
    their ``lastTransitionTime`` while their status holds.
    """
    facts = gather(
        cluster,
        observed,
        invalid=invalid,
        apply_error=apply_error,
        applied=applied,
        rollout=rollout,
        unserved=unserved,
        previous=cluster.status if previous is None else previous,
        withheld=withheld,
        keda_served=keda_served,
    )
    generation = cluster.metadata.generation
    before = cluster.status if previous is None else previous
    stamp = conditions.Stamp(list(before.get("conditions") or []), generation, now)
    workers = facts.workers
    found_conditions = [
        ready.condition(facts, stamp),
        progressing.condition(facts, stamp),
        degraded.condition(facts, stamp),
        monitoring.condition(facts, stamp),
        *autoscaling.conditions(facts, stamp),
    ]
    backups = backup.status(cluster, observed, now)
    if backups is not None:
        found_conditions.append(backup.condition(backups, stamp))
    result = {
        "observedGeneration": generation,
        "conditions": found_conditions,
        "replicas": workers.current,
        "readyReplicas": workers.ready,
        "selector": meta.selector_string(cluster, meta.WORKER),
        "workers": workers.display,
        "endpoint": worker.websocket_endpoint(cluster),
        "components": dict(facts.components),
        "rollout": dict(rollout.status)
        if rollout is not None
        else {"strategy": cluster.spec.rollout.strategy.value},
    }
    if backups is not None:
        result["backup"] = backups
    return result


def _without_nulls(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


def changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether writing ``new`` would change anything (``lastTransitionTime`` is kept when unchanged).

    A ``None`` in ``new`` removes the field (JSON merge patch), so it matches an absent one.
    """
    return any(_without_nulls(old.get(key)) != _without_nulls(value) for key, value in new.items())


def transitions(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Transition]:
    """Events worth posting: Ready and Degraded flipping."""
    before: Sequence[Mapping[str, Any]] = old.get("conditions") or []
    after: Sequence[Mapping[str, Any]] = new.get("conditions") or []
    found: list[Transition] = []
    ready_after = conditions.find(after, ConditionType.READY)
    was_ready = conditions.is_true(before, ConditionType.READY)
    if ready_after is not None and conditions.is_true(after, ConditionType.READY) != was_ready:
        if was_ready:
            found.append(
                Transition(EventType.WARNING, EventReason.BECAME_NOT_READY, str(ready_after["message"]))
            )
        else:
            found.append(Transition(EventType.NORMAL, EventReason.BECAME_READY, str(ready_after["message"])))
    degraded_after = conditions.find(after, ConditionType.DEGRADED)
    was_degraded = conditions.is_true(before, ConditionType.DEGRADED)
    is_degraded = conditions.is_true(after, ConditionType.DEGRADED)
    if (
        degraded_after is not None
        and is_degraded
        and (
            not was_degraded
            or (conditions.find(before, ConditionType.DEGRADED) or {}).get("message")
            != degraded_after["message"]
        )
    ):
        found.append(
            Transition(EventType.WARNING, EventReason.BECAME_DEGRADED, str(degraded_after["message"]))
        )
    elif was_degraded and not is_degraded:
        found.append(Transition(EventType.NORMAL, EventReason.RECOVERED, "the cluster is no longer degraded"))
    monitoring_after = conditions.find(after, ConditionType.MONITORING)
    monitoring_before = conditions.find(before, ConditionType.MONITORING) or {}
    if (
        monitoring_after is not None
        and monitoring_after["reason"] == Reason.MONITORING_CRD_MISSING
        and monitoring_before.get("reason") != Reason.MONITORING_CRD_MISSING
    ):
        found.append(
            Transition(
                EventType.WARNING, EventReason.MONITORING_CRD_MISSING, str(monitoring_after["message"])
            )
        )
    found += [Transition(*note) for note in autoscaling.transitions(before, after)]
    return found
