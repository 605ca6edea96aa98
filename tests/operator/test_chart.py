"""The Helm chart, rendered by the real helm binary."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from resonance_operator.api import kinds

from tests.operator import fixtures

CHART = fixtures.REPO / "charts" / "resonance-operator"
CACHED_HELM = Path.home() / ".cache" / "resonance-liminal" / "bin" / "current" / "helm"


def helm_binary() -> str | None:
    return os.environ.get("HELM") or (str(CACHED_HELM) if CACHED_HELM.exists() else shutil.which("helm"))


@pytest.fixture(scope="module")
def helm() -> str:
    found = helm_binary()
    if found is None:
        pytest.skip("no helm binary (e2e/cluster/build-binaries fetches it)")
    return found


def render(helm: str, *args: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [helm, "template", "rel", str(CHART), "--namespace", "ops", "--kube-version", "1.34.0", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def test_chart_crd_is_identical_to_the_crds_directory(helm: str) -> None:
    rendered = by_kind(render(helm), "CustomResourceDefinition")
    assert len(rendered) == 1
    crd = rendered[0]
    assert crd["metadata"].pop("annotations") == {"helm.sh/resource-policy": "keep"}
    assert crd == fixtures.crd(), "run charts/resonance-operator/hack/sync-crd.py"
    # Byte level too: the template is the source file plus the gate and the annotation.
    import importlib.util

    spec = importlib.util.spec_from_file_location("sync_crd", CHART / "hack" / "sync-crd.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (CHART / "templates" / "crds" / "resonanceclusters.yaml").read_text() == module.render()


def test_crd_switches(helm: str) -> None:
    assert by_kind(render(helm, "--set", "crds.create=false"), "CustomResourceDefinition") == []
    unkept = by_kind(render(helm, "--set", "crds.keep=false"), "CustomResourceDefinition")[0]
    assert not unkept["metadata"].get("annotations")


def test_secure_pod_defaults(helm: str) -> None:
    deployment = by_kind(render(helm), "Deployment")[0]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["image"] == "ghcr.io/liminal/resonance-operator:0.1.0"
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["RESONANCE_OPERATOR_PEERING"] == "" and env["RESONANCE_OPERATOR_NAMESPACE"] == ""


def test_rbac_is_cluster_wide_or_namespaced_and_least_privilege(helm: str) -> None:
    docs = render(helm)
    role = by_kind(docs, "ClusterRole")[0]
    verbs = {
        (group, resource): set(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert verbs[("", "secrets")] == {"get", "create", "patch", "delete"}  # no list/watch of secrets
    assert verbs[("", "events")] == {"create"}
    assert verbs[("resonance.liminal.dev", "resonanceclusters/status")] == {"get", "patch"}
    assert not any("*" in v for v in verbs.values())
    # Pods only read (rollouts scrape and drain workers), never written or watched.
    assert verbs[("", "pods")] == {"get", "list", "patch"}
    binding = by_kind(docs, "ClusterRoleBinding")[0]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "rel-resonance-operator", "namespace": "ops"}
    ]
    namespaced = render(helm, "--set", "watch.namespace=apps")
    assert by_kind(namespaced, "ClusterRole") == []
    assert by_kind(namespaced, "Role")[0]["metadata"]["namespace"] == "apps"
    assert by_kind(namespaced, "RoleBinding")[0]["roleRef"]["kind"] == "Role"


def rbac_rules(*args: str) -> list[dict[str, Any]]:
    """The operator's RBAC rules as the chart renders them (by the real helm when there is one, else
    read from the template's rules helper, which both the ClusterRole and the Role include)."""
    found = helm_binary()
    if found is not None:
        docs = render(found, *args)
        role = (by_kind(docs, "ClusterRole") or by_kind(docs, "Role"))[0]
        rules: list[dict[str, Any]] = role["rules"]
        return rules
    template = (CHART / "templates" / "_helpers.tpl").read_text()
    body = template.split('{{- define "resonance-operator.rules" -}}', 1)[1].split("{{- end }}", 1)[0]
    parsed: list[dict[str, Any]] = yaml.safe_load(body)
    return parsed


def granted(rules: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    verbs: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                verbs.setdefault((group, resource), set()).update(rule["verbs"])
    return verbs


@pytest.mark.parametrize("scope", [(), ("--set", "watch.namespace=apps")], ids=["cluster-wide", "namespaced"])
def test_rbac_grants_every_registered_kind_the_verbs_the_operator_uses(scope: tuple[str, ...]) -> None:
    """api/kinds.py is the one list of kinds (paths, verbs, watches); the chart must keep up with it."""
    verbs = granted(rbac_rules(*scope))
    wanted = {(kind.group, kind.plural): set(kind.verbs) for kind in kinds.KINDS}
    for kind in kinds.KINDS:
        for subresource, sub_verbs in kind.subresources.items():
            wanted[(kind.group, f"{kind.plural}/{subresource}")] = set(sub_verbs)
    missing = {
        resource: sorted(needed - verbs.get(resource, set()))
        for resource, needed in wanted.items()
        if not needed <= verbs.get(resource, set())
    }
    assert missing == {}, "grant these in charts/resonance-operator/templates/_helpers.tpl"
    # And nothing on a resource the operator does not know (a grant left behind by a removed child).
    assert set(verbs) - set(wanted) == set()


def test_the_rules_read_from_the_template_are_what_helm_renders(
    helm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rendered = rbac_rules()
    monkeypatch.setitem(rbac_rules.__globals__, "helm_binary", lambda: None)
    assert rbac_rules() == rendered


def test_peering(helm: str) -> None:
    docs = render(helm, "--set", "peering.enabled=true", "--set", "replicaCount=2")
    assert sorted(d["metadata"]["name"] for d in by_kind(docs, "CustomResourceDefinition")) == [
        "clusterkopfpeerings.kopf.dev",
        "resonanceclusters.resonance.liminal.dev",
    ]
    assert by_kind(docs, "ClusterKopfPeering")[0]["metadata"]["name"] == "resonance-operator"
    deployment = by_kind(docs, "Deployment")[0]
    assert "strategy" not in deployment["spec"]
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["RESONANCE_OPERATOR_PEERING"] == "resonance-operator"
    namespaced = render(helm, "--set", "peering.enabled=true", "--set", "watch.namespace=apps")
    assert by_kind(namespaced, "KopfPeering")[0]["metadata"]["namespace"] == "apps"


def test_service_monitor_toggle(helm: str) -> None:
    assert by_kind(render(helm), "ServiceMonitor") == []
    monitor = by_kind(render(helm, "--set", "metrics.serviceMonitor.enabled=true"), "ServiceMonitor")[0]
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "interval": "30s"}]


def test_values_schema_refuses_bad_values(helm: str) -> None:
    for bad in ("replicaCount=-1", "image.pullPolicy=Sometimes", "unknownKey=1", "watch.namespace=Bad_NS"):
        result = subprocess.run(
            [helm, "template", "rel", str(CHART), "--kube-version", "1.34.0", "--set", bad],
            capture_output=True,
            text=True,
        )
        assert result.returncode != 0, bad
        assert "values don't meet the specifications of the schema" in result.stderr, result.stderr


def test_every_value_is_documented_and_in_the_schema() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    lines = (CHART / "values.yaml").read_text().splitlines()

    def documented(key: str) -> bool:
        for index, line in enumerate(lines):
            if re.match(rf"^\s*{re.escape(key)}:", line):
                above = lines[index - 1].strip() if index else ""
                return above.startswith("# --") or not line.rstrip().endswith(":") or above.startswith("#")
        return False

    def walk(node: dict[str, Any], schema_node: dict[str, Any], path: str) -> list[str]:
        problems = []
        for key, value in node.items():
            if key not in schema_node.get("properties", {}):
                problems.append(f"{path}{key} missing from values.schema.json")
                continue
            sub = schema_node["properties"][key]
            if "description" not in sub:
                problems.append(f"{path}{key} has no schema description")
            if isinstance(value, dict) and "properties" in sub:
                problems.extend(walk(value, sub, f"{path}{key}."))
            elif not documented(key):
                problems.append(f"{path}{key} has no # -- comment")
        return problems

    assert walk(values, schema, "") == []
