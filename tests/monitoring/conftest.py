"""The cached tools of e2e/cluster/build-binaries (helm, promtool), and the chart rendered by helm."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "resonance-operator"
BIN = (
    Path(os.environ.get("RESONANCE_CACHE", Path.home() / ".cache" / "resonance-liminal")) / "bin" / "current"
)


def tool(name: str) -> str:
    """A binary from the build-binaries cache (or PATH); missing is a failure under `make test`."""
    cached = BIN / name
    found = str(cached) if cached.exists() else shutil.which(name)
    if found is None:
        message = f"no {name}: run `make binaries` (e2e/cluster/build-binaries builds it)"
        if os.environ.get("RESONANCE_REQUIRE_K8S") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="session")
def helm() -> str:
    return tool("helm")


@pytest.fixture(scope="session")
def promtool() -> str:
    return tool("promtool")


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
