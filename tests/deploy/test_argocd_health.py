"""Runs deploy/argocd/health.lua on a real Lua 5.1 interpreter (Argo CD embeds
gopher-lua, a Lua 5.1) over the cases of health_test.yaml, in Argo CD's own
test format: the script sees the resource as the global ``obj`` and returns
``hs`` with ``status`` and ``message``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import lua

ARGOCD = Path(__file__).resolve().parents[2] / "deploy" / "argocd"
CASES = yaml.safe_load((ARGOCD / "health_test.yaml").read_text())["tests"]


def run_health(obj: dict[str, Any]) -> dict[str, str]:
    hs = lua.run_script(ARGOCD / "health.lua", obj)
    return {"status": hs["status"], "message": hs.get("message", "")}


@pytest.mark.parametrize("case", CASES, ids=[Path(c["inputPath"]).stem for c in CASES])
def test_health_case(case: dict[str, Any]) -> None:
    obj = yaml.safe_load((ARGOCD / case["inputPath"]).read_text())
    assert run_health(obj) == case["healthStatus"]


def test_every_testdata_file_is_a_case() -> None:
    used = {Path(c["inputPath"]).name for c in CASES}
    present = {p.name for p in (ARGOCD / "testdata").glob("*.yaml")}
    assert used == present


def test_every_health_status_is_exercised() -> None:
    assert {c["healthStatus"]["status"] for c in CASES} == {"Healthy", "Progressing", "Degraded", "Suspended"}
