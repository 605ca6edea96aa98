"""What the operator tells a person whose spec edit it acts on differently than written (pure).

A notice is a Kubernetes Event posted when a spec edit makes it true, never once per reconcile:
:func:`spec_notices` compares the worker spec before an edit (``None`` for a new cluster) with the
cluster after it.

- ``ReplicasOwnedByAutoscaler`` (Warning): ``spec.worker.replicas`` changed - ``kubectl scale`` writes it
  through the scale subresource - while autoscaling is on; the HPA owns the count, the value is ignored.
- ``DefaultCPURequest`` (Normal): autoscaling (whose CPU target is a share of the CPU request) is on and
  ``spec.worker.resources`` names no CPU; the workers get ``sizing.DEFAULT_CPU_REQUEST``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pydantic

from resonance_operator.api.conditions import EventReason, EventType
from resonance_operator.api.spec import ResonanceCluster, WorkerSpec
from resonance_operator.desired import sizing

Notice = tuple[EventType, EventReason, str]


def spec_notices(cluster: ResonanceCluster, before: Mapping[str, Any] | None) -> list[Notice]:
    """The notices an edit from ``before`` (``spec.worker`` as it was; ``None``: created) to ``cluster``
    earns."""
    worker = cluster.spec.worker
    autoscaling = worker.autoscaling
    if not autoscaling.enabled:
        return []
    previous = _parse(before)
    notices: list[Notice] = []
    if previous is not None and previous.replicas != worker.replicas:
        notices.append(
            (
                EventType.WARNING,
                EventReason.REPLICAS_OWNED_BY_AUTOSCALER,
                f"spec.worker.replicas={worker.replicas} is ignored: autoscaling is enabled, so its "
                f"HorizontalPodAutoscaler owns the workers' replica count (spec.worker.autoscaling "
                f"minReplicas={autoscaling.min_replicas}, maxReplicas={autoscaling.max_replicas}); change "
                "those, or set spec.worker.autoscaling.enabled=false to set the count by hand",
            )
        )
    said = previous is not None and previous.autoscaling.enabled and not sizing.names_cpu(previous.resources)
    if not sizing.names_cpu(worker.resources) and not said:
        notices.append(
            (
                EventType.NORMAL,
                EventReason.DEFAULT_CPU_REQUEST,
                f"spec.worker.resources names no CPU request; the workers get the default "
                f"{sizing.DEFAULT_CPU_REQUEST}, against which the HorizontalPodAutoscaler's "
                f"{autoscaling.target_cpu_utilization_percentage}% CPU target is measured "
                "(set spec.worker.resources.requests.cpu to choose)",
            )
        )
    return notices


def _parse(before: Mapping[str, Any] | None) -> WorkerSpec | None:
    """The worker spec before the edit; ``None`` when there was none or it no longer parses."""
    if before is None:
        return None
    try:
        return WorkerSpec.model_validate({"image": "", **before})
    except pydantic.ValidationError:
        return None
