from __future__ import annotations

from typing import Any

import pydantic
import pytest
from resonance_operator.api import spec as api

from tests.operator import fixtures


def _model_fields(model: type[pydantic.BaseModel]) -> dict[str, Any]:
    return {field.alias or name: field for name, field in model.model_fields.items()}


def _walk(schema: dict[str, Any], model: type[pydantic.BaseModel], path: str) -> list[str]:
    """Paths where the CRD schema and the pydantic model disagree on field names."""
    problems: list[str] = []
    fields = _model_fields(model)
    for name, sub in schema.get("properties", {}).items():
        if name not in fields:
            problems.append(f"{path}.{name} is in the CRD but not in {model.__name__}")
            continue
        annotation = fields[name].annotation
        nested = [
            arg
            for arg in (getattr(annotation, "__args__", None) or (annotation,))
            if isinstance(arg, type) and issubclass(arg, pydantic.BaseModel)
        ]
        if nested and sub.get("type") == "object" and "properties" in sub:
            problems.extend(_walk(sub, nested[0], f"{path}.{name}"))
        if sub.get("type") == "array" and nested:
            problems.extend(_walk(sub["items"], nested[0], f"{path}.{name}[]"))
    for alias in fields:
        if alias not in schema.get("properties", {}):
            problems.append(f"{path}.{alias} is in {model.__name__} but not in the CRD")
    return problems


def test_every_crd_field_has_a_model_field_and_back() -> None:
    assert _walk(fixtures.spec_schema(), api.ClusterSpec, "spec") == []


@pytest.mark.parametrize(
    "spec",
    [
        fixtures.with_worker(),
        {**fixtures.with_worker(), "neo4j": {"managed": {}}},
        {**fixtures.with_worker(), "redis": {"external": {"url": "redis://r:6379"}}},
        {
            **fixtures.with_worker(),
            "rollout": {"strategy": "canary", "canary": {"steps": [{"setWeight": 10}]}},
        },
        {**fixtures.with_worker(autoscaling={"enabled": True}), "ingress": {"enabled": True, "host": "a.b"}},
    ],
)
def test_model_defaults_equal_crd_defaults(spec: dict[str, Any]) -> None:
    """A body the API server defaulted parses to the same spec as the raw body."""
    defaulted = fixtures.apply_schema_defaults(spec, fixtures.spec_schema())
    assert defaulted != spec
    assert api.parse(fixtures.body(defaulted)).spec == api.parse(fixtures.body(spec)).spec


def test_parse_reads_metadata_and_status() -> None:
    cluster = api.parse(fixtures.body(status={"observedGeneration": 2}))
    assert (cluster.name, cluster.namespace, cluster.metadata.generation) == ("demo", "team-a", 3)
    assert cluster.status == {"observedGeneration": 2}
    assert api.parse({**fixtures.body(), "status": None}).status == {}


def test_parse_refuses_unknown_fields_and_missing_image() -> None:
    with pytest.raises(pydantic.ValidationError, match=r"extra_forbidden|Extra inputs"):
        api.parse(fixtures.body({"worker": {"image": "x", "replica": 3}}))
    with pytest.raises(pydantic.ValidationError, match="image"):
        api.parse(fixtures.body({"worker": {}}))


def test_quantities_given_as_numbers_become_strings() -> None:
    cluster = fixtures.cluster(fixtures.with_worker(resources={"requests": {"cpu": 1}}))
    assert cluster.spec.worker.resources.requests == {"cpu": "1"}


def test_modes() -> None:
    default = fixtures.cluster()
    assert default.spec.redis.is_managed
    assert default.spec.neo4j.mode is api.Neo4jMode.DISABLED
    assert default.spec.auth.generates_secret
    external = fixtures.cluster(
        {
            **fixtures.with_worker(),
            "redis": {"external": {"url": "redis://r:6379/0"}},
            "neo4j": {"external": {"uri": "bolt://n:7687", "passwordSecretRef": {"name": "n", "key": "p"}}},
            "auth": {"jwksUrl": "https://idp/jwks"},
        }
    )
    assert not external.spec.redis.is_managed
    assert external.spec.neo4j.mode is api.Neo4jMode.EXTERNAL
    assert not external.spec.auth.generates_secret
    assert (
        fixtures.cluster({**fixtures.with_worker(), "neo4j": {"managed": {}}}).spec.neo4j.mode
        is api.Neo4jMode.MANAGED
    )
