"""Runs deploy/argocd/health.lua on a real Lua 5.1 interpreter (Argo CD embeds
gopher-lua, a Lua 5.1) over the cases of health_test.yaml, in Argo CD's own
test format: the script sees the resource as the global ``obj`` and returns
``hs`` with ``status`` and ``message``."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ARGOCD = Path(__file__).resolve().parents[2] / "deploy" / "argocd"
CASES = yaml.safe_load((ARGOCD / "health_test.yaml").read_text())["tests"]


def lua_literal(value: Any) -> str:
    """A Lua expression for a YAML/JSON value (lists become 1-based arrays, as Argo CD passes them)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string literal is a valid Lua string literal for this text
    if isinstance(value, list):
        return "{" + ", ".join(lua_literal(v) for v in value) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{json.dumps(str(k))}] = {lua_literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot express {type(value).__name__} in Lua")


def run_health(obj: dict[str, Any]) -> dict[str, str]:
    lua = shutil.which("lua5.1") or shutil.which("lua")
    if lua is None:
        pytest.fail("no Lua interpreter: run `make deps` (apt-get install lua5.1)")
    program = (
        f"obj = {lua_literal(obj)}\n"
        f"local check = assert(loadfile({json.dumps(str(ARGOCD / 'health.lua'))}))\n"
        "local hs = check()\n"
        "io.write(hs.status, '\\n', hs.message or '', '\\n')\n"
    )
    result = subprocess.run([lua, "-"], input=program, capture_output=True, text=True, timeout=10, check=True)
    status, message = result.stdout.split("\n")[:2]
    return {"status": status, "message": message}


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
