#!/usr/bin/env python3
"""Write the Grafana dashboards of files/dashboards/ from the panel lists below (the single source).

    charts/resonance-operator/hack/dashboards.py            # rewrite the JSON files
    charts/resonance-operator/hack/dashboards.py --check    # exit 1 when a file differs (tests run this)

Each panel is (title, unit, [(PromQL, legend)], kind). Every dashboard has a Prometheus data source
variable and ``namespace`` / ``pod`` variables; worker queries filter on ``namespace=~"$namespace",
pod=~"$pod"``, so "All" covers every worker. The JSON is Grafana's dashboard model (schemaVersion 39),
for the Grafana sidecar's ConfigMaps (templates/dashboards.yaml). Every metric named here must be one a
worker or the operator exposes: tests/monitoring checks that against live scrapes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "files" / "dashboards"
W = 'namespace=~"$namespace", pod=~"$pod"'  # the worker selector every worker query uses

Panel = tuple[str, str, list[tuple[str, str]], str]


def rate(metric: str, by: str = "", selector: str = W) -> str:
    group = f" by ({by})" if by else ""
    return f"sum{group} (rate({metric}{{{selector}}}[$__rate_interval]))"


def quantile(q: float, metric: str, selector: str = W) -> str:
    return f"histogram_quantile({q}, sum by (le) (rate({metric}_bucket{{{selector}}}[$__rate_interval])))"


WORKERS: list[tuple[str, list[Panel]]] = [
    (
        "Traffic",
        [
            (
                "Open connections",
                "short",
                [(f"sum by (pod) (resonance_connections{{{W}}})", "{{pod}}")],
                "timeseries",
            ),
            (
                "Commands per second, by method",
                "reqps",
                [(rate("resonance_commands_total", "method"), "{{method}}")],
                "timeseries",
            ),
            (
                "Publications delivered per second",
                "ops",
                [(rate("resonance_publications_delivered_total", "pod"), "{{pod}}")],
                "timeseries",
            ),
            (
                "Delivery latency (acceptance to fan-out)",
                "s",
                [
                    (quantile(0.5, "resonance_delivery_latency_seconds"), "p50"),
                    (quantile(0.99, "resonance_delivery_latency_seconds"), "p99"),
                ],
                "timeseries",
            ),
        ],
    ),
    (
        "Errors",
        [
            (
                "Error replies per second, by code",
                "reqps",
                [(rate("resonance_command_errors_total", "code"), "{{code}}")],
                "timeseries",
            ),
            (
                "Error ratio",
                "percentunit",
                [
                    (
                        f"{rate('resonance_command_errors_total')} / {rate('resonance_commands_total')}",
                        "errors / commands",
                    )
                ],
                "timeseries",
            ),
            (
                "Server disconnects per second, by code",
                "ops",
                [(rate("resonance_disconnects_total", "code"), "{{code}}")],
                "timeseries",
            ),
            (
                "Limits tripped per second, by kind",
                "ops",
                [(rate("resonance_limit_violations_total", "kind"), "{{kind}}")],
                "timeseries",
            ),
        ],
    ),
    (
        "Thyroid and circuits",
        [
            (
                "Thyroid pain",
                "short",
                [(f"max by (pod) (resonance_thyroid_pain{{{W}}})", "{{pod}}")],
                "timeseries",
            ),
            (
                "Thyroid state (workers in each state)",
                "short",
                [(f"sum by (state) (resonance_thyroid_state{{{W}}})", "{{state}}")],
                "timeseries",
            ),
            (
                "Open circuits",
                "short",
                [(f"max by (pod, dependency) (resonance_circuit_open{{{W}}})", "{{pod}} {{dependency}}")],
                "timeseries",
            ),
            (
                "Pain refused and clients cut off per second",
                "ops",
                [
                    (rate("resonance_thyroid_pain_refused_total"), "pain refused"),
                    (rate("resonance_thyroid_cut_offs_total"), "cut off (3509)"),
                ],
                "timeseries",
            ),
            (
                "Biometric batch CPU time",
                "s",
                [
                    (quantile(0.99, "resonance_bio_update_seconds"), "p99"),
                    (quantile(0.5, "resonance_bio_update_seconds"), "p50"),
                ],
                "timeseries",
            ),
            (
                "Resonance rooms",
                "short",
                [(f"sum by (pod) (resonance_rooms{{{W}}})", "{{pod}}")],
                "timeseries",
            ),
        ],
    ),
    (
        "Drains, readiness, recovery",
        [
            ("Draining workers", "short", [(f"sum (resonance_draining{{{W}}})", "draining")], "stat"),
            ("Ready workers", "short", [(f"sum (resonance_ready{{{W}}})", "ready")], "stat"),
            (
                "Connections closed by drains per second",
                "ops",
                [(rate("resonance_drain_closes_total", "pod"), "{{pod}}")],
                "timeseries",
            ),
            (
                "Recoveries per second, by outcome",
                "ops",
                [(rate("resonance_recoveries_total", "outcome"), "{{outcome}}")],
                "timeseries",
            ),
            (
                "HTTP requests per second",
                "reqps",
                [(rate("resonance_http_requests_total", "route, status"), "{{route}} {{status}}")],
                "timeseries",
            ),
        ],
    ),
]

OP = 'namespace=~"$namespace"'  # the operator Pods' namespace
OPERATOR: list[tuple[str, list[Panel]]] = [
    (
        "Reconciles",
        [
            (
                "Reconciles per second, by trigger",
                "ops",
                [
                    (
                        rate("resonance_operator_reconciles_total", "trigger", OP),
                        "{{trigger}}",
                    )
                ],
                "timeseries",
            ),
            (
                "Failed reconciles per second, by kind",
                "ops",
                [
                    (
                        rate("resonance_operator_reconcile_errors_total", "kind", OP),
                        "{{kind}}",
                    )
                ],
                "timeseries",
            ),
            (
                "Reconcile duration",
                "s",
                [
                    (
                        quantile(q, "resonance_operator_reconcile_duration_seconds", OP),
                        f"p{int(q * 100)}",
                    )
                    for q in (0.5, 0.99)
                ],
                "timeseries",
            ),
            (
                "Kubernetes API requests per second",
                "reqps",
                [
                    (
                        rate("resonance_operator_kube_requests_total", "verb, code", OP),
                        "{{verb}} {{code}}",
                    )
                ],
                "timeseries",
            ),
        ],
    ),
    (
        "Clusters",
        [
            ("Clusters ready", "short", [("sum (resonance_operator_cluster_ready)", "ready")], "stat"),
            (
                "Clusters not ready",
                "short",
                [("count (resonance_operator_cluster_ready == 0) or vector(0)", "not ready")],
                "stat",
            ),
            (
                "Ready, by cluster",
                "short",
                [("max by (namespace, name) (resonance_operator_cluster_ready)", "{{namespace}}/{{name}}")],
                "timeseries",
            ),
        ],
    ),
]

DATASTORES: list[tuple[str, list[Panel]]] = [
    (
        "Redis (engine) and Neo4j, as the workers see them",
        [
            ("Workers reaching their engine", "short", [(f"sum (resonance_ready{{{W}}})", "ready")], "stat"),
            (
                "Redis circuit open",
                "short",
                [(f'max by (pod) (resonance_circuit_open{{{W}, dependency="redis"}})', "{{pod}}")],
                "timeseries",
            ),
            (
                "Neo4j circuit open",
                "short",
                [(f'max by (pod) (resonance_circuit_open{{{W}, dependency="neo4j"}})', "{{pod}}")],
                "timeseries",
            ),
            (
                "Recoveries from the history stream, by outcome",
                "ops",
                [(rate("resonance_recoveries_total", "outcome"), "{{outcome}}")],
                "timeseries",
            ),
        ],
    ),
]


def _variables(namespace_metric: str, with_pod: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
        },
        {
            "name": "namespace",
            "label": "Namespace",
            "type": "query",
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "query": f"label_values({namespace_metric}, namespace)",
            "includeAll": True,
            "multi": True,
            "refresh": 2,
            "current": {},
        },
    ]
    if with_pod:
        out.append(
            {
                "name": "pod",
                "label": "Worker Pod",
                "type": "query",
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "query": f'label_values({namespace_metric}{{namespace=~"$namespace"}}, pod)',
                "includeAll": True,
                "multi": True,
                "allValue": ".*",
                "refresh": 2,
                "current": {},
            }
        )
    return out


def _panel(panel_id: int, panel: Panel, x: int, y: int) -> dict[str, Any]:
    title, unit, targets, kind = panel
    return {
        "id": panel_id,
        "type": kind,
        "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {
            "x": x,
            "y": y,
            "w": 12 if kind == "timeseries" else 6,
            "h": 8 if kind == "timeseries" else 4,
        },
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "expr": expr,
                "legendFormat": legend,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
            }
            for i, (expr, legend) in enumerate(targets)
        ],
    }


def dashboard(
    uid: str, title: str, rows: list[tuple[str, list[Panel]]], namespace_metric: str, with_pod: bool
) -> dict[str, Any]:
    """A Grafana dashboard: one collapsed-open row per group, panels two (graphs) or four (stats) a line."""
    panels: list[dict[str, Any]] = []
    next_id, y = 1, 0
    for row_title, row_panels in rows:
        panels.append(
            {
                "id": next_id,
                "type": "row",
                "title": row_title,
                "collapsed": False,
                "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
                "panels": [],
            }
        )
        next_id, y, x, height = next_id + 1, y + 1, 0, 0
        for panel in row_panels:
            built = _panel(next_id, panel, x, y)
            width, height = built["gridPos"]["w"], max(height, built["gridPos"]["h"])
            if x + width > 24:
                x, y, height = 0, y + height, built["gridPos"]["h"]
                built["gridPos"].update(x=x, y=y)
            panels.append(built)
            next_id, x = next_id + 1, x + width
        y += height
    return {
        "uid": uid,
        "title": title,
        "tags": ["resonance"],
        "timezone": "",
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": _variables(namespace_metric, with_pod)},
        "annotations": {"list": []},
        "panels": panels,
    }


DASHBOARDS = {
    "resonance-workers": dashboard(
        "resonance-workers", "Resonance / Workers", WORKERS, "resonance_connections", True
    ),
    "resonance-operator": dashboard(
        "resonance-operator", "Resonance / Operator", OPERATOR, "resonance_operator_reconciles_total", False
    ),
    "resonance-datastores": dashboard(
        "resonance-datastores", "Resonance / Datastores", DATASTORES, "resonance_ready", True
    ),
}


def rendered() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {
        f"{name}.json": json.dumps(body, indent=2, sort_keys=True) + "\n" for name, body in DASHBOARDS.items()
    }


def main() -> int:
    files = rendered()
    if "--check" in sys.argv[1:]:
        stale = sorted(
            n for n, text in files.items() if not (OUT / n).exists() or (OUT / n).read_text() != text
        )
        extra = sorted(p.name for p in OUT.glob("*.json") if p.name not in files)
        for name in stale + extra:
            print(f"dashboards: {name} is out of date; run {Path(__file__).name}", file=sys.stderr)
        return 1 if stale or extra else 0
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (OUT / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
