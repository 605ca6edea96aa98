from __future__ import annotations

from resonance_operator.desired import datastores, meta

from tests.operator import fixtures


def test_managed_redis_with_persistence() -> None:
    cluster = fixtures.cluster(
        {
            **fixtures.with_worker(),
            "redis": {
                "managed": {
                    "persistence": {"size": "2Gi", "storageClassName": "fast"},
                    "resources": {"limits": {"memory": "1Gi"}},
                }
            },
        }
    )
    stateful_set = datastores.redis_stateful_set(cluster)
    assert stateful_set is not None
    spec = stateful_set["spec"]
    assert spec["serviceName"] == "demo-redis" and spec["replicas"] == 1
    claim = spec["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert claim["spec"]["storageClassName"] == "fast"
    container = spec["template"]["spec"]["containers"][0]
    assert container["image"] == "redis:7.4-alpine"
    assert container["args"][:4] == ["redis-server", "--appendonly", "yes", "--dir"]
    assert container["resources"] == {"limits": {"memory": "1Gi"}}
    assert "volumes" not in spec["template"]["spec"]
    service = datastores.redis_service(cluster)
    assert service is not None and service["spec"]["clusterIP"] == "None"


def test_ephemeral_redis_and_external_redis() -> None:
    ephemeral = fixtures.cluster(
        {**fixtures.with_worker(), "redis": {"managed": {"persistence": {"enabled": False}}}}
    )
    stateful_set = datastores.redis_stateful_set(ephemeral)
    assert stateful_set is not None
    assert "volumeClaimTemplates" not in stateful_set["spec"]
    assert stateful_set["spec"]["template"]["spec"]["volumes"] == [{"name": "data", "emptyDir": {}}]
    assert stateful_set["spec"]["template"]["spec"]["containers"][0]["args"][2] == "no"
    external = fixtures.cluster({**fixtures.with_worker(), "redis": {"external": {"url": "redis://r"}}})
    assert datastores.redis_stateful_set(external) is None
    assert datastores.redis_service(external) is None


def test_managed_neo4j() -> None:
    cluster = fixtures.cluster(
        {
            **fixtures.with_worker(),
            "neo4j": {
                "managed": {
                    "resources": {"requests": {"memory": "2Gi"}},
                    "scheduling": {"nodeSelector": {"disk": "ssd"}},
                }
            },
        }
    )
    stateful_set = datastores.neo4j_stateful_set(cluster)
    assert stateful_set is not None
    pod = stateful_set["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["env"][0]["valueFrom"]["secretKeyRef"] == {"name": "demo-neo4j-auth", "key": "password"}
    assert container["env"][1] == {"name": "NEO4J_AUTH", "value": "neo4j/$(NEO4J_PASSWORD)"}
    assert container["resources"] == {"requests": {"memory": "2Gi"}}
    assert pod["nodeSelector"] == {"disk": "ssd"}
    assert (
        stateful_set["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "5Gi"
    )
    service = datastores.neo4j_service(cluster)
    assert service is not None and [p["port"] for p in service["spec"]["ports"]] == [7687, 7474]
    ephemeral = fixtures.cluster(
        {
            **fixtures.with_worker(),
            "neo4j": {"managed": {"persistence": {"enabled": False}, "authSecretRef": {"name": "n4j"}}},
        }
    )
    ephemeral_set = datastores.neo4j_stateful_set(ephemeral)
    assert ephemeral_set is not None and "volumeClaimTemplates" not in ephemeral_set["spec"]
    assert (
        ephemeral_set["spec"]["template"]["spec"]["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"][
            "name"
        ]
        == "n4j"
    )
    assert datastores.neo4j_stateful_set(fixtures.cluster()) is None
    assert datastores.neo4j_service(fixtures.cluster()) is None


def test_network_policy_admits_only_workers() -> None:
    both = fixtures.cluster({**fixtures.with_worker(), "neo4j": {"managed": {}}})
    policy = datastores.network_policy(both)
    assert policy is not None
    spec = policy["spec"]
    assert spec["podSelector"]["matchExpressions"][0]["values"] == ["redis", "neo4j"]
    assert spec["ingress"] == [
        {"from": [{"podSelector": {"matchLabels": meta.selector_labels(both, meta.WORKER)}}]}
    ]
    assert spec["policyTypes"] == ["Ingress"]
    redis_only = datastores.network_policy(fixtures.cluster())
    assert redis_only is not None and redis_only["spec"]["podSelector"]["matchExpressions"][0]["values"] == [
        "redis"
    ]
    nothing_managed = fixtures.cluster(
        {**fixtures.with_worker(), "redis": {"external": {"url": "redis://r"}}}
    )
    assert datastores.network_policy(nothing_managed) is None
    disabled = fixtures.cluster({**fixtures.with_worker(), "networkPolicy": {"enabled": False}})
    assert datastores.network_policy(disabled) is None
