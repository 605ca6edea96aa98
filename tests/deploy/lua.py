"""Run Argo CD Lua scripts on a real Lua 5.1 (Argo CD embeds gopher-lua, a Lua 5.1): the resource goes
in as the global ``obj`` (YAML/JSON values as Lua tables, lists 1-based), the script's return value
comes back as JSON."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

# A JSON writer for the script's result: tables with keys 1..n are arrays, other tables objects; an
# empty table is written as {} (Lua cannot tell [] from {}; compare with :func:`normalize`).
_TO_JSON = r"""
local function to_json(v)
  local t = type(v)
  if t == "nil" then return "null" end
  if t == "boolean" then return tostring(v) end
  if t == "number" then return string.format("%.17g", v) end
  if t == "string" then
    local s = v:gsub('[%c"\\]', function(c)
      local named = {['"'] = '\\"', ['\\'] = '\\\\', ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t'}
      return named[c] or string.format("\\u%04x", string.byte(c))
    end)
    return '"' .. s .. '"'
  end
  local n, count = #v, 0
  for _ in pairs(v) do count = count + 1 end
  local parts = {}
  if n > 0 and n == count then
    for i = 1, n do parts[i] = to_json(v[i]) end
    return "[" .. table.concat(parts, ",") .. "]"
  end
  for k, item in pairs(v) do parts[#parts + 1] = to_json(tostring(k)) .. ":" .. to_json(item) end
  return "{" .. table.concat(parts, ",") .. "}"
end
"""


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


def interpreter() -> str:
    lua = shutil.which("lua5.1") or shutil.which("lua")
    if lua is None:
        pytest.fail("no Lua interpreter: run `make deps` (apt-get install lua5.1)")
    return lua


def run_script(script: Path, obj: dict[str, Any]) -> Any:
    """Run ``script`` with ``obj`` as the global ``obj`` and return what it returns, as JSON values."""
    program = (
        f"{_TO_JSON}\nobj = {lua_literal(obj)}\n"
        f"local script = assert(loadfile({json.dumps(str(script))}))\n"
        "io.write(to_json(script()))\n"
    )
    result = subprocess.run(
        [interpreter(), "-"], input=program, capture_output=True, text=True, timeout=10, check=True
    )
    return json.loads(result.stdout)


def normalize(value: Any) -> Any:
    """Empty lists become empty objects, as they come back from Lua."""
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v) for v in value] if value else {}
    return value
