"""The cached tools of e2e/cluster/build-binaries (helm, promtool); the chart is rendered by
``tests.operator.test_chart.render`` (the real helm)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.operator.test_chart import by_kind, render

__all__ = ["CHART", "REPO", "by_kind", "helm", "promtool", "render", "tool"]

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
