"""The Grafana dashboards: generated from hack/dashboards.py, shipped as sidecar ConfigMaps, and
well-formed (unique panel ids, no overlapping panels, every query on the data source variable)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tests.monitoring.conftest import CHART, by_kind, render

FILES = sorted((CHART / "files" / "dashboards").glob("*.json"))


def test_the_json_is_what_the_generator_writes() -> None:
    result = subprocess.run(
        [sys.executable, str(CHART / "hack" / "dashboards.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert [f.stem for f in FILES] == ["resonance-datastores", "resonance-operator", "resonance-workers"]


def _cells(panel: dict[str, Any]) -> set[tuple[int, int]]:
    g = panel["gridPos"]
    return {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_dashboard_is_well_formed(path: Any) -> None:
    board = json.loads(path.read_text())
    panels = board["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    taken: set[tuple[int, int]] = set()
    for panel in panels:
        cells = _cells(panel)
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        assert all(0 <= x < 24 for x, _ in cells)
        taken |= cells
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert target["expr"].strip()
    variables = {v["name"] for v in board["templating"]["list"]}
    assert {"datasource", "namespace"} <= variables


def test_the_chart_ships_each_dashboard_for_the_grafana_sidecar(helm: str) -> None:
    assert [d for d in by_kind(render(helm), "ConfigMap") if "dashboard" in d["metadata"]["name"]] == []
    docs = render(
        helm,
        "--set", "monitoring.dashboards.enabled=true",
        "--set", "monitoring.dashboards.namespace=monitoring",
        "--set", "monitoring.dashboards.annotations.grafana_folder=Resonance",
    )  # fmt: skip
    maps = by_kind(docs, "ConfigMap")
    assert sorted(m["metadata"]["name"] for m in maps) == [
        f"rel-resonance-operator-dashboard-{f.stem}" for f in FILES
    ]
    for config_map, path in zip(sorted(maps, key=lambda m: m["metadata"]["name"]), FILES, strict=True):
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert config_map["metadata"]["namespace"] == "monitoring"
        assert config_map["metadata"]["annotations"] == {"grafana_folder": "Resonance"}
        assert json.loads(config_map["data"][path.name]) == json.loads(path.read_text())
