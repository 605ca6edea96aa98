"""The GitHub workflows users expect mirror what runs here: the test workflow runs `.ci/run`, the
images workflow builds every Dockerfile the daemonless build carries out, the chart workflow packages
the chart the tests render."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"


def _load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as True.
    loaded["on"] = loaded.pop(True, loaded.get("on"))
    return loaded


def _steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def test_the_test_workflow_runs_ci_run_as_root_on_debian() -> None:
    workflow = _load("test.yml")
    job = workflow["jobs"]["test"]
    assert job["container"]["image"] == "debian:bookworm"
    assert "--privileged" in job["container"]["options"]
    assert job["timeout-minutes"] == 90
    assert [s["run"] for s in _steps(workflow) if s.get("run", "").startswith("bash")] == ["bash .ci/run"]
    assert (REPO / ".ci" / "run").read_text().rstrip().endswith("exec make test")
    assert set(workflow["on"]) == {"push", "pull_request"}


def test_the_images_workflow_builds_every_dockerfile_for_two_architectures() -> None:
    workflow = _load("images.yml")
    assert workflow["on"] == {"push": {"tags": ["v*"]}}
    job = workflow["jobs"]["image"]
    components = job["strategy"]["matrix"]["component"]
    assert sorted(f"Dockerfile.{c}" for c in components) == sorted(p.name for p in REPO.glob("Dockerfile.*"))
    build = next(s for s in job["steps"] if s.get("uses", "").startswith("docker/build-push-action"))
    assert build["with"]["file"] == "Dockerfile.${{ matrix.component }}"
    assert build["with"]["platforms"] == "linux/amd64,linux/arm64"
    meta = next(s for s in job["steps"] if s.get("uses", "").startswith("docker/metadata-action"))
    # The chart's default image repository is the one pushed.
    values = yaml.safe_load((REPO / "charts" / "resonance-operator" / "values.yaml").read_text())
    assert values["image"]["repository"].endswith("/resonance-operator")
    assert meta["with"]["images"].endswith("/resonance-${{ matrix.component }}")


def test_the_chart_workflow_packages_the_chart_with_the_tested_helm() -> None:
    workflow = _load("chart.yml")
    assert workflow["on"] == {"push": {"tags": ["v*"]}}
    steps = _steps(workflow)
    helm = next(s for s in steps if s.get("uses", "").startswith("azure/setup-helm"))
    versions = dict(
        line.split("=", 1)
        for line in (REPO / "e2e" / "cluster" / "versions.env").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert helm["with"]["version"] == f"v{versions['HELM_VERSION']}"
    script = " ".join(s.get("run", "") for s in steps)
    assert "helm package charts/resonance-operator" in script and "helm push" in script


def test_every_action_is_pinned_to_a_major_version() -> None:
    for path in WORKFLOWS.glob("*.yml"):
        for step in _steps(_load(path.name)):
            if "uses" in step:
                assert "@v" in step["uses"], f"{path.name}: {step['uses']}"
