"""The one list of kinds: paths, verbs and watches derive from it (the chart's RBAC: test_chart.py)."""

from __future__ import annotations

from resonance_operator.api import kinds
from resonance_operator.kube.client import collection_path


def test_children_are_read_applied_and_pruned_and_some_listed_or_watched() -> None:
    assert kinds.SERVICE.verbs == {"get", "create", "patch", "delete"}
    assert kinds.DEPLOYMENT.verbs == {"get", "list", "watch", "create", "patch", "delete"}
    assert kinds.STATEFUL_SET.verbs == kinds.DEPLOYMENT.verbs
    assert kinds.WATCHED == (kinds.DEPLOYMENT, kinds.STATEFUL_SET, kinds.CRON_JOB)
    assert {k.kind for k in kinds.KINDS if k.optional} == {
        "ServiceMonitor",
        "PodMonitor",
        "HTTPRoute",
        "ScaledObject",
    }


def test_every_kind_has_one_path() -> None:
    assert len(kinds.PLURALS) == len(kinds.KINDS)
    assert (kinds.DEPLOYMENT.group, kinds.DEPLOYMENT.version) == ("apps", "v1")
    assert (kinds.SECRET.group, kinds.SECRET.version) == ("", "v1")
    assert collection_path("v1", "Pod", "ns") == "/api/v1/namespaces/ns/pods"
    assert (
        collection_path(kinds.CLUSTER.api_version, kinds.CLUSTER.kind, "ns")
        == "/apis/resonance.liminal.dev/v1alpha1/namespaces/ns/resonanceclusters"
    )
