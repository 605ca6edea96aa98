"""The PrometheusRule the chart ships, tested by the real promtool (built from the Go module proxy):
``promtool check rules`` and ``promtool test rules`` with a firing and a quiet case for every alert,
and the conventions every alert keeps (severity, summary, description, a runbook that exists)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.monitoring.conftest import CHART, REPO, by_kind, render

TESTS = Path(__file__).with_name("rules_test.yaml")
RUNBOOK_PREFIX = "https://github.com/liminal/resonance-liminal/blob/main/docs/runbooks/"


@pytest.fixture(scope="module")
def rules(helm: str) -> list[dict[str, Any]]:
    rule = by_kind(render(helm, "--set", "monitoring.prometheusRule.enabled=true"), "PrometheusRule")
    assert len(rule) == 1
    return [r for group in rule[0]["spec"]["groups"] for r in group["rules"]]


@pytest.fixture(scope="module")
def rules_dir(helm: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """rules.yaml (the groups of the rendered PrometheusRule) beside a copy of rules_test.yaml."""
    rule = by_kind(render(helm, "--set", "monitoring.prometheusRule.enabled=true"), "PrometheusRule")[0]
    directory = tmp_path_factory.mktemp("rules")
    (directory / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    shutil.copy(TESTS, directory / TESTS.name)
    return directory


def test_promtool_checks_the_rules(promtool: str, rules_dir: Path) -> None:
    result = subprocess.run(
        [promtool, "check", "rules", "rules.yaml"], cwd=rules_dir, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass(promtool: str, rules_dir: Path) -> None:
    result = subprocess.run(
        [promtool, "test", "rules", TESTS.name], cwd=rules_dir, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_firing_and_a_quiet_case(rules: list[dict[str, Any]]) -> None:
    cases = [case for test in yaml.safe_load(TESTS.read_text())["tests"] for case in test["alert_rule_test"]]
    for alert in (r["alert"] for r in rules):
        mine = [c for c in cases if c["alertname"] == alert]
        assert any(c["exp_alerts"] for c in mine), f"{alert} never fires in rules_test.yaml"
        assert any(not c["exp_alerts"] for c in mine), f"{alert} has no case where it must stay quiet"


def test_every_alert_follows_the_conventions_and_has_a_runbook(rules: list[dict[str, Any]]) -> None:
    assert rules, "no alerts rendered"
    for rule in rules:
        alert = rule["alert"]
        assert alert.startswith("Resonance") and alert.isalnum(), alert
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), alert
        url = rule["annotations"]["runbook_url"]
        assert url == f"{RUNBOOK_PREFIX}{alert}.md"
        runbook = REPO / "docs" / "runbooks" / f"{alert}.md"
        assert runbook.exists(), f"missing {runbook.relative_to(REPO)}"
        text = runbook.read_text()
        assert text.startswith(f"# {alert}\n"), runbook
        for section in ("## Meaning", "## Impact", "## Diagnosis", "## Mitigation"):
            assert section in text, f"{runbook.name} lacks {section}"
    listed = {p.stem for p in (REPO / "docs" / "runbooks").glob("Resonance*.md")}
    assert listed == {r["alert"] for r in rules}, "a runbook without its alert, or the reverse"


def test_exclude_rules_leaves_alerts_out_and_the_schema_knows_every_name(
    helm: str, rules: list[dict[str, Any]]
) -> None:
    docs = render(
        helm,
        "--set", "monitoring.prometheusRule.enabled=true",
        "--set", "monitoring.prometheusRule.excludeRules={ResonanceCircuitOpen,ResonanceClusterNotReady}",
        "--set", "monitoring.prometheusRule.labels.release=kube-prometheus-stack",
    )  # fmt: skip
    rule = by_kind(docs, "PrometheusRule")[0]
    kept = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert kept == {r["alert"] for r in rules} - {"ResonanceCircuitOpen", "ResonanceClusterNotReady"}
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    schema = json.loads((CHART / "values.schema.json").read_text())
    names = schema["properties"]["monitoring"]["properties"]["prometheusRule"]["properties"]["excludeRules"]
    assert set(names["items"]["enum"]) == {r["alert"] for r in rules}
    assert by_kind(render(helm), "PrometheusRule") == []


def test_a_misspelt_exclusion_is_refused(helm: str) -> None:
    result = subprocess.run(
        [
            helm,
            "template",
            "rel",
            str(CHART),
            "--set",
            "monitoring.prometheusRule.excludeRules={ResonanceTypo}",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
