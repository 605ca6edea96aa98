from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any

import pytest
from resonance_operator.api import validation

from tests.operator import fixtures


def _secret(**data: str) -> dict[str, Any]:
    return {"data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Decimal("0.5")),
        ("1Gi", Decimal(2**30)),
        ("2", Decimal(2)),
        ("1e3", Decimal(1000)),
        ("1.5k", Decimal(1500)),
    ],
)
def test_parse_quantity(text: str, value: Decimal) -> None:
    assert validation.parse_quantity(text) == value


def test_parse_quantity_refuses_garbage() -> None:
    with pytest.raises(ValueError, match="not a quantity"):
        validation.parse_quantity("lots")
    with pytest.raises(ValueError, match="not a quantity"):
        validation.parse_quantity("1.2.3")


def test_a_valid_spec_has_no_errors() -> None:
    assert validation.semantic_errors(fixtures.cluster(), {}) == []


def test_requests_above_limits_and_bad_quantities() -> None:
    cluster = fixtures.cluster(
        {
            **fixtures.with_worker(
                resources={
                    "requests": {"cpu": "2", "memory": "1Gi"},
                    "limits": {"cpu": "500m", "memory": "x"},
                }
            ),
            "redis": {"managed": {"resources": {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}}},
            "neo4j": {
                "managed": {
                    "resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "2Gi", "cpu": "1"}}
                }
            },
        }
    )
    errors = validation.semantic_errors(cluster, {"demo-neo4j-auth": None})
    assert errors == [
        "spec.worker.resources: cpu request 2 exceeds its limit 500m",
        "spec.worker.resources: not a quantity: 'x'",
        "spec.redis.managed.resources: memory request 2Gi exceeds its limit 1Gi",
    ]


def test_long_names_and_derived_env_and_decreasing_weights() -> None:
    cluster = fixtures.cluster(
        {
            **fixtures.with_worker(
                env=[{"name": "RESONANCE_REDIS_URL", "value": "redis://x"}, {"name": "OK", "value": "1"}]
            ),
            "rollout": {
                "strategy": "canary",
                "canary": {"steps": [{"setWeight": 50}, {"pause": {}}, {"setWeight": 20}]},
            },
        },
        name="a" * 41,
    )
    errors = validation.semantic_errors(cluster, {})
    assert errors[0].startswith("metadata.name: 41 characters")
    assert "spec.worker.env: RESONANCE_REDIS_URL is set by the operator from spec.redis" in errors
    assert "spec.rollout.canary.steps: setWeight must not decrease, got [50, 20]" in errors


def test_referenced_secrets() -> None:
    cluster = fixtures.cluster(
        {
            **fixtures.with_worker(),
            "auth": {"jwtSecretRef": {"name": "jwt"}},
            "redis": {"external": {"urlSecretRef": {"name": "redis", "key": "url"}}},
            "neo4j": {"external": {"uri": "bolt://g", "passwordSecretRef": {"name": "graph"}}},
        }
    )
    assert validation.referenced_secret_names(cluster) == ["graph", "jwt", "redis"]
    assert validation.semantic_errors(
        cluster, {"jwt": None, "redis": _secret(other="x"), "graph": _secret(password="")}
    ) == [
        "spec.auth.jwtSecretRef: Secret 'jwt' not found",
        "spec.redis.external.urlSecretRef: Secret 'redis' has no key 'url'",
        "spec.neo4j.external.passwordSecretRef: key 'password' of Secret 'graph' is empty",
    ]
    broken = {
        "jwt": {"data": {"secret": "!!!"}},
        "redis": _secret(url="redis://r"),
        "graph": _secret(password="pw"),
    }
    assert validation.semantic_errors(cluster, broken) == [
        "spec.auth.jwtSecretRef: key 'secret' of Secret 'jwt' is not valid base64"
    ]
    good = {"jwt": _secret(secret="s"), "redis": _secret(url="redis://r"), "graph": _secret(password="pw")}
    assert validation.semantic_errors(cluster, good) == []
    managed = fixtures.cluster(
        {**fixtures.with_worker(), "neo4j": {"managed": {"authSecretRef": {"name": "n4j"}}}}
    )
    assert validation.semantic_errors(managed, {"n4j": _secret(password="pw")}) == []
