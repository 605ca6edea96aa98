"""The Monitoring condition: a requested PodMonitor or ServiceMonitor whose CRD is not served is said
so (False, MonitoringCRDMissing, a Warning Event once), not skipped silently."""

from __future__ import annotations

from resonance_operator.api.conditions import EventReason, EventType
from resonance_operator.api.observed import Observed
from resonance_operator.status import compute

from tests.operator import fixtures


def _monitoring(status: dict) -> dict:  # type: ignore[type-arg]
    return next(c for c in status["conditions"] if c["type"] == "Monitoring")


def test_nothing_requested_is_true() -> None:
    status = compute.compute(fixtures.cluster(), Observed(), now="2026-01-01T00:00:00Z")
    assert (_monitoring(status)["status"], _monitoring(status)["reason"]) == ("True", "NotRequested")


def test_a_missing_crd_is_a_condition_and_one_warning_event() -> None:
    spec = {**fixtures.with_worker(), "observability": {"podMonitor": {"enabled": True}}}
    cluster = fixtures.cluster(spec)
    missing = compute.compute(cluster, Observed(), now="2026-01-01T00:00:00Z", unserved=["PodMonitor"])
    condition = _monitoring(missing)
    assert (condition["status"], condition["reason"]) == ("False", "MonitoringCRDMissing")
    assert "PodMonitor" in condition["message"] and "Prometheus Operator" in condition["message"]
    events = [t for t in compute.transitions({}, missing) if t.reason is EventReason.MONITORING_CRD_MISSING]
    assert [e.type for e in events] == [EventType.WARNING]
    # Still missing on the next reconcile: no second Event.
    again = compute.compute(
        fixtures.cluster(spec, status=missing),
        Observed(),
        now="2026-01-01T00:00:30Z",
        unserved=["PodMonitor"],
    )
    assert not [
        t for t in compute.transitions(missing, again) if t.reason is EventReason.MONITORING_CRD_MISSING
    ]
    # The CRD installed: the monitor is created and the condition says so.
    served = compute.compute(fixtures.cluster(spec, status=again), Observed(), now="2026-01-01T00:01:00Z")
    assert (_monitoring(served)["status"], _monitoring(served)["reason"]) == ("True", "MonitorsCreated")
    assert _monitoring(served)["message"] == "PodMonitor created for the workers"
