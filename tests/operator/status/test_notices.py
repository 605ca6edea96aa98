from __future__ import annotations

from typing import Any

from resonance_operator.api.conditions import EventReason, EventType
from resonance_operator.desired import sizing
from resonance_operator.status.notices import spec_notices

from tests.operator import fixtures

AUTOSCALING = {"enabled": True, "minReplicas": 2, "maxReplicas": 8}


def reasons(after: dict[str, Any], before: dict[str, Any] | None) -> list[EventReason]:
    return [reason for _, reason, _ in spec_notices(fixtures.cluster({"worker": after}), before)]


def worker(**fields: Any) -> dict[str, Any]:
    return {"image": "registry.example/resonance-worker:1.0", **fields}


def test_scaling_the_cluster_while_the_hpa_owns_replicas_is_a_warning() -> None:
    cpu = {"requests": {"cpu": "1"}}
    before = worker(replicas=2, autoscaling=AUTOSCALING, resources=cpu)
    notices = spec_notices(fixtures.cluster({"worker": {**before, "replicas": 7}}), before)
    assert [(t, r) for t, r, _ in notices] == [(EventType.WARNING, EventReason.REPLICAS_OWNED_BY_AUTOSCALER)]
    message = notices[0][2]
    assert "spec.worker.replicas=7 is ignored" in message and "minReplicas=2, maxReplicas=8" in message
    # Without autoscaling the count is the spec's: nothing to say; an edit elsewhere says nothing either.
    assert reasons(worker(replicas=7, resources=cpu), worker(replicas=2, resources=cpu)) == []
    assert reasons({**before, "port": 9000}, before) == []


def test_a_missing_cpu_request_under_autoscaling_is_said_once() -> None:
    bare = worker(autoscaling=AUTOSCALING)
    assert reasons(bare, None) == [EventReason.DEFAULT_CPU_REQUEST]  # created so
    assert reasons(bare, worker()) == [EventReason.DEFAULT_CPU_REQUEST]  # autoscaling turned on
    assert reasons(bare, worker(autoscaling=AUTOSCALING, resources={"requests": {"cpu": "1"}})) == [
        EventReason.DEFAULT_CPU_REQUEST
    ]  # its CPU request removed
    assert reasons({**bare, "port": 9000}, bare) == []  # already said
    assert reasons(worker(autoscaling=AUTOSCALING, resources={"limits": {"cpu": "2"}}), None) == []
    assert reasons(worker(), None) == []  # no HPA: the default request is given, nothing measured against it
    message = spec_notices(fixtures.cluster({"worker": bare}), None)[0][2]
    assert f"default {sizing.DEFAULT_CPU_REQUEST}," in message and "70% CPU target" in message


def test_a_previous_spec_that_no_longer_parses_counts_as_none() -> None:
    assert reasons(worker(autoscaling=AUTOSCALING), {"replicas": "many"}) == [EventReason.DEFAULT_CPU_REQUEST]
