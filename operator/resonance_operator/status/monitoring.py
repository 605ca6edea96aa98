"""The ``Monitoring`` condition: the monitors the spec asks for exist (pure).

A PodMonitor or ServiceMonitor needs the Prometheus Operator's CRDs; without them the operator creates
nothing for it and says so here (``False``/``MonitoringCRDMissing``, with a Warning Event on the
transition) instead of skipping it silently. Nothing asked for is ``True``/``NotRequested``.
"""

from __future__ import annotations

from typing import Any

from resonance_operator.api.conditions import ConditionStatus, ConditionType, Reason
from resonance_operator.status.conditions import Stamp
from resonance_operator.status.facts import Facts


def condition(facts: Facts, stamp: Stamp) -> dict[str, Any]:
    if facts.unserved:
        missing = ", ".join(facts.unserved)
        message = (
            f"spec.observability asks for {missing} but monitoring.coreos.com/v1 is not served: "
            "install the Prometheus Operator's CRDs; nothing scrapes the workers until then"
        )
        return stamp(ConditionType.MONITORING, ConditionStatus.FALSE, Reason.MONITORING_CRD_MISSING, message)
    if not facts.monitors:
        return stamp(
            ConditionType.MONITORING,
            ConditionStatus.TRUE,
            Reason.MONITORING_NOT_REQUESTED,
            "no monitor requested (spec.observability)",
        )
    return stamp(
        ConditionType.MONITORING,
        ConditionStatus.TRUE,
        Reason.MONITORS_CREATED,
        f"{', '.join(facts.monitors)} created for the workers",
    )
