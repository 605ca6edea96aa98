"""The CRD file itself: names, subresources, printer columns and CEL rules.
(The real API server accepting it, and enforcing the rules, is in e2e/operator.)"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from resonance_operator.api.spec import parse
from resonance_operator.rollout import plan

from tests.operator import fixtures

# Short names of the built-in kinds of Kubernetes 1.34 (kubectl api-resources).
BUILT_IN_SHORT_NAMES = {
    "cs", "cm", "ep", "ev", "limits", "ns", "no", "pvc", "pv", "po", "rc", "quota", "sa", "svc",
    "crd", "crds", "ds", "deploy", "rs", "sts", "hpa", "cj", "csr", "ing", "netpol", "pdb", "pc", "sc",
    "ipaddr", "vac", "vap",
}  # fmt: skip


def _version() -> dict[str, Any]:
    version: dict[str, Any] = fixtures.crd()["spec"]["versions"][0]
    return version


def _rules(schema: Any) -> list[str]:
    found: list[str] = []
    if isinstance(schema, dict):
        found.extend(rule["rule"] for rule in schema.get("x-kubernetes-validations", []))
        for value in schema.values():
            found.extend(_rules(value))
    elif isinstance(schema, list):
        for value in schema:
            found.extend(_rules(value))
    return found


def test_names_scope_and_version() -> None:
    crd = fixtures.crd()
    assert crd["metadata"]["name"] == "resonanceclusters.resonance.liminal.dev"
    spec = crd["spec"]
    assert (spec["group"], spec["scope"], spec["names"]["kind"]) == (
        "resonance.liminal.dev",
        "Namespaced",
        "ResonanceCluster",
    )
    assert spec["names"]["categories"] == ["resonance"]
    assert not set(spec["names"]["shortNames"]) & BUILT_IN_SHORT_NAMES
    assert [(v["name"], v["served"], v["storage"]) for v in spec["versions"]] == [("v1alpha1", True, True)]


def test_status_and_scale_subresources() -> None:
    subresources = _version()["subresources"]
    assert subresources["status"] == {}
    assert subresources["scale"] == {
        "specReplicasPath": ".spec.worker.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }


def test_printer_columns_read_conditions() -> None:
    columns = {c["name"]: c for c in _version()["additionalPrinterColumns"]}
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Reason"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].reason'
    assert columns["Workers"]["jsonPath"] == ".status.workers"
    assert {"Step", "Weight", "Age", "Endpoint"} <= set(columns)


def test_cel_rules_for_exclusions_and_immutability() -> None:
    rules = _rules(_version()["schema"])
    assert "has(self.managed) != has(self.external)" in rules  # redis: managed XOR external
    assert "!(has(self.managed) && has(self.external))" in rules  # neo4j: managed, external or neither
    assert "!(has(self.jwtSecretRef) && has(self.jwksUrl))" in rules  # auth
    assert "!(has(self.sentinel) && has(self.cluster))" in rules  # external redis: one discovery at most
    assert rules.count("self == oldSelf") == 2  # the PVC-shaping persistence blocks


def test_every_property_is_described_and_every_list_typed() -> None:
    def walk(schema: dict[str, Any], path: str) -> list[str]:
        problems = []
        for name, sub in schema.get("properties", {}).items():
            if "description" not in sub:
                problems.append(f"{path}.{name}: no description")
            if sub.get("type") == "array" and "x-kubernetes-list-type" not in sub:
                problems.append(f"{path}.{name}: no list type")
            problems.extend(walk(sub, f"{path}.{name}"))
        if "items" in schema:
            problems.extend(walk(schema["items"], f"{path}[]"))
        return problems

    assert walk(fixtures.spec_schema(), "spec") == []
    assert len(fixtures.CRD_PATH.read_bytes()) < 250_000  # client-side apply (and Argo CD) still work


def test_every_example_parses_and_its_rollout_is_valid() -> None:
    for path in sorted((fixtures.REPO / "examples").glob("*.yaml")):
        body = yaml.safe_load(path.read_text())
        body["metadata"].update(namespace="team-a", uid="u", generation=1)
        cluster = parse(
            {**body, "spec": fixtures.apply_schema_defaults(body["spec"], fixtures.spec_schema())}
        )
        assert plan.spec_errors(cluster.spec.rollout, gateway_served=False) == [], path.name


@pytest.mark.parametrize(
    "entry",
    ["*", "null", "https://app.example.com", "http://127.0.0.1:8080", "https://*.example.org", "http://[::1]:3000",
     "https://app.example.com/", "https://a.com/path", "app.example.com", "https://*.*.example.com",
     "https://a.*.com", "https://a.com:port", ""],
)  # fmt: skip
def test_the_allowed_origins_pattern_is_the_workers(entry: str) -> None:
    """The API server refuses (by the CRD's pattern) exactly the entries the worker refuses to start with."""
    from resonance_worker.domain.origins import check_entry

    worker = _version()["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["worker"]
    pattern = worker["properties"]["allowedOrigins"]["items"]["pattern"]
    try:
        check_entry(entry)
        accepted = True
    except ValueError:
        accepted = False
    assert bool(re.match(pattern, entry)) is accepted
