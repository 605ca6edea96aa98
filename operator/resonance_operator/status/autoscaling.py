"""The ``Autoscaling`` condition: how the workers are scaled, while ``autoscaling.enabled`` (pure).

``targetConnectionsPerPod`` acts through KEDA's ScaledObject (``desired/keda.py``); where KEDA's CRD is
not served the operator keeps its CPU HPA and says so here (``False``/``KEDANotServed``, with a Warning
Event on the transition) instead of writing a target nothing acts on silently. A CPU target alone is
``True``/``ScaledOnCPU``; the connections target through KEDA ``True``/``ScaledByKEDA``. Without
``autoscaling.enabled`` the condition is absent (the replica count is the spec's).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from resonance_operator.api.conditions import ConditionStatus, ConditionType, EventReason, EventType, Reason
from resonance_operator.status import conditions as conds
from resonance_operator.status.conditions import Stamp
from resonance_operator.status.facts import Facts


def conditions(facts: Facts, stamp: Stamp) -> list[dict[str, Any]]:
    """The condition, or none while autoscaling is off."""
    autoscaling = facts.autoscaling
    if autoscaling is None:
        return []
    cpu = f"{autoscaling.target_cpu_utilization_percentage} % CPU"
    if autoscaling.target_connections_per_pod is None:
        return [stamp(ConditionType.AUTOSCALING, ConditionStatus.TRUE, Reason.SCALED_ON_CPU, f"HPA on {cpu}")]
    target = f"{autoscaling.target_connections_per_pod} connections per pod"
    if facts.keda_served:
        message = f"KEDA ScaledObject on {target} (Prometheus {autoscaling.prometheus_address}) and {cpu}"
        return [stamp(ConditionType.AUTOSCALING, ConditionStatus.TRUE, Reason.SCALED_BY_KEDA, message)]
    message = (
        f"autoscaling.targetConnectionsPerPod ({target}) needs KEDA: keda.sh/v1alpha1 ScaledObject is not "
        f"served, so the workers scale on {cpu} only (the HPA's resonance_connections Pods metric acts "
        "only where a custom-metrics adapter serves it); install KEDA"
    )
    return [stamp(ConditionType.AUTOSCALING, ConditionStatus.FALSE, Reason.KEDA_NOT_SERVED, message)]


def transitions(
    before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]]
) -> list[tuple[EventType, EventReason, str]]:
    """A Warning Event when the connections target starts to need KEDA."""
    now = conds.find(after, ConditionType.AUTOSCALING)
    was = conds.find(before, ConditionType.AUTOSCALING) or {}
    if now is not None and now["reason"] == Reason.KEDA_NOT_SERVED and was.get("reason") != now["reason"]:
        return [(EventType.WARNING, EventReason.KEDA_NOT_SERVED, str(now["message"]))]
    return []
