from __future__ import annotations

from resonance_operator.kube.client import KubeClient
from resonance_operator.kube.credentials import Credentials
from resonance_operator.reconcile import reconcile_cluster

from tests.operator import fixtures


async def test_a_cluster_being_deleted_is_left_to_the_garbage_collector() -> None:
    # Nothing listens on this address: any API call would fail the test.
    kube = KubeClient(Credentials(server="http://127.0.0.1:9"))
    body = fixtures.body()
    body["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert await reconcile_cluster(kube, body) is None
    assert kube.reads == kube.writes == 0
    await kube.close()
