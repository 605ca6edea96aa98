"""Metric names: the ones the chart's alerts and dashboards name in PromQL, and the ones a live
``/metrics`` scrape exposes (text format 0.0.4, as prometheus_client renders it)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "resonance-operator"
# A Resonance series name in PromQL; label names never start with resonance_.
_NAME = re.compile(r"\b(resonance_[a-z0-9_]+)\b")
_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}


def named_in_rules() -> dict[str, set[str]]:
    """Alert name -> the metric names its expression (and annotation queries) use."""
    groups = yaml.safe_load((CHART / "files" / "prometheus-rules.yaml").read_text())["groups"]
    out: dict[str, set[str]] = {}
    for rule in (r for g in groups for r in g["rules"]):
        text = rule["expr"] + " ".join(rule.get("annotations", {}).values())
        out[rule["alert"]] = set(_NAME.findall(text))
    return out


def named_in_dashboards() -> dict[str, set[str]]:
    """'<dashboard>: <panel or variable>' -> the metric names its queries use."""
    out: dict[str, set[str]] = {}
    for path in sorted((CHART / "files" / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                out.setdefault(f"{path.stem}: {panel['title']}", set()).update(_NAME.findall(target["expr"]))
        for variable in board["templating"]["list"]:
            found = set(_NAME.findall(str(variable.get("query", ""))))
            if found:
                out[f"{path.stem}: ${variable['name']}"] = found
    return out


def exposed(exposition: str) -> set[str]:
    """Every series name a scrape can hold, from its ``# TYPE`` lines (so a labelled family with no
    child yet counts: it is declared, its series appear once something happens)."""
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            names.add(name)
            names.update(name + suffix for suffix in _SUFFIXES.get(kind.strip(), ()))
    return names
