"""The Argo CD resource actions of deploy/argocd/actions (promote, promote-full, abort, retry) over the
cases of their action_test.yaml, in Argo CD's own format, on a real Lua 5.1; and the argocd-cm patch,
which must carry exactly these scripts and the health check."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import lua

ARGOCD = Path(__file__).resolve().parents[2] / "deploy" / "argocd"
ACTIONS = ARGOCD / "actions"
CASES = yaml.safe_load((ACTIONS / "action_test.yaml").read_text())
ANNOTATION = "resonance.liminal.dev/rollout-action"


def _load(path: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ACTIONS / path).read_text())
    return loaded


@pytest.mark.parametrize(
    "case", CASES["discoveryTests"], ids=[Path(c["inputPath"]).stem for c in CASES["discoveryTests"]]
)
def test_discovery(case: dict[str, Any]) -> None:
    found = lua.run_script(ACTIONS / "discovery.lua", _load(case["inputPath"]))
    expected = {r["name"]: {k: v for k, v in r.items() if k != "name"} for r in case["result"]}
    assert found == expected


@pytest.mark.parametrize(
    "case",
    CASES["actionTests"],
    ids=[f"{c['action']}-{Path(c['inputPath']).stem}" for c in CASES["actionTests"]],
)
def test_action(case: dict[str, Any]) -> None:
    before = _load(case["inputPath"])
    after = lua.run_script(ACTIONS / case["action"] / "action.lua", before)
    assert lua.normalize(after) == lua.normalize(_load(case["expectedOutputPath"]))
    # The action only asks: the annotation is the one change, the operator does the rest.
    assert after["metadata"]["annotations"][ANNOTATION] == case["action"]


def test_every_action_and_testdata_file_is_covered() -> None:
    defined = {p.parent.name for p in ACTIONS.glob("*/action.lua")}
    assert defined == {"promote", "promote-full", "abort", "retry"}
    assert {c["action"] for c in CASES["actionTests"]} == defined
    for case in CASES["discoveryTests"]:
        assert {r["name"] for r in case["result"]} == defined
    used = {Path(c["inputPath"]).name for c in CASES["discoveryTests"] + CASES["actionTests"]}
    used |= {Path(c["expectedOutputPath"]).name for c in CASES["actionTests"]}
    assert used == {p.name for p in (ACTIONS / "testdata").glob("*.yaml")}


def test_every_action_is_offered_somewhere_and_refused_somewhere() -> None:
    for name in ("promote", "promote-full", "abort", "retry"):
        states = {r["disabled"] for c in CASES["discoveryTests"] for r in c["result"] if r["name"] == name}
        assert states == {True, False}, name


def test_the_actions_ask_for_what_the_operator_understands() -> None:
    # The operator parses exactly these values (docs/rollouts.md, "The annotation").
    rollouts = (ARGOCD.parents[1] / "docs" / "rollouts.md").read_text()
    for name in ("promote", "promote-full", "abort", "retry"):
        assert f"| `{name}` |" in rollouts


def test_argocd_cm_patch_carries_exactly_these_scripts() -> None:
    spec = importlib.util.spec_from_file_location("render_cm", ARGOCD / "render-cm.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (ARGOCD / "argocd-cm-patch.yaml").read_text() == module.render(), "run deploy/argocd/render-cm.py"
    data = yaml.safe_load((ARGOCD / "argocd-cm-patch.yaml").read_text())["data"]
    key = "resonance.liminal.dev_ResonanceCluster"
    assert data[f"resource.customizations.health.{key}"] == (ARGOCD / "health.lua").read_text()
    actions = yaml.safe_load(data[f"resource.customizations.actions.{key}"])
    assert actions["discovery.lua"] == (ACTIONS / "discovery.lua").read_text()
    assert {d["name"]: d["action.lua"] for d in actions["definitions"]} == {
        p.parent.name: p.read_text() for p in ACTIONS.glob("*/action.lua")
    }
