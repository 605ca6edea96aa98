"""What the Prometheus Operator makes of a PodMonitor: the scrape configs it would
generate (job names, Kubernetes service discovery, the relabelling that selects targets and labels
them), so a real Prometheus here scrapes exactly what it would in a cluster with the operator.
Pure: manifests in, scrape configs out.

Covered: ``selector.matchLabels`` and ``matchExpressions`` (In, NotIn, Exists, DoesNotExist),
``namespaceSelector`` (``any``, ``matchNames``), endpoints by port name, ``path``, ``interval``,
``scrapeTimeout``, ``honorLabels``, ``podTargetLabels``; the target labels ``namespace``, ``pod``,
``container``, ``endpoint``, ``job``; Pods in phase Succeeded or Failed dropped.
"""

from __future__ import annotations

import re
from typing import Any


def _sanitize(label: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", label)


def _selector_relabels(selector: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for key, value in sorted((selector.get("matchLabels") or {}).items()):
        name = _sanitize(key)
        rules.append(
            {
                "action": "keep",
                "source_labels": [f"{prefix}_label_{name}", f"{prefix}_labelpresent_{name}"],
                "regex": f"({re.escape(value)});true",
            }
        )
    for expression in selector.get("matchExpressions") or []:
        name, operator = _sanitize(expression["key"]), expression["operator"]
        values = "|".join(re.escape(v) for v in expression.get("values") or [])
        if operator == "In":
            rules.append(
                {
                    "action": "keep",
                    "source_labels": [f"{prefix}_label_{name}", f"{prefix}_labelpresent_{name}"],
                    "regex": f"({values});true",
                }
            )
        elif operator == "NotIn":
            rules.append(
                {
                    "action": "drop",
                    "source_labels": [f"{prefix}_label_{name}", f"{prefix}_labelpresent_{name}"],
                    "regex": f"({values});true",
                }
            )
        elif operator == "Exists":
            rules.append(
                {"action": "keep", "source_labels": [f"{prefix}_labelpresent_{name}"], "regex": "true"}
            )
        elif operator == "DoesNotExist":
            rules.append(
                {"action": "drop", "source_labels": [f"{prefix}_labelpresent_{name}"], "regex": "true"}
            )
        else:
            raise ValueError(f"unknown selector operator {operator!r}")
    return rules


def _namespaces(monitor: dict[str, Any]) -> dict[str, Any]:
    selector = monitor["spec"].get("namespaceSelector") or {}
    if selector.get("any"):
        return {}
    return {"namespaces": {"names": list(selector.get("matchNames") or [monitor["metadata"]["namespace"]])}}


def _copy_labels(labels: list[str], prefix: str) -> list[dict[str, Any]]:
    return [
        {
            "action": "replace",
            "source_labels": [f"{prefix}_label_{_sanitize(label)}"],
            "target_label": _sanitize(label),
            "regex": "(.+)",
            "replacement": "${1}",
        }
        for label in labels
    ]


def _endpoint_options(endpoint: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {
        "metrics_path": endpoint.get("path", "/metrics"),
        "honor_labels": bool(endpoint.get("honorLabels", False)),
    }
    if "interval" in endpoint:
        options["scrape_interval"] = endpoint["interval"]
    if "scrapeTimeout" in endpoint:
        options["scrape_timeout"] = endpoint["scrapeTimeout"]
    return options


def pod_monitor(monitor: dict[str, Any], kubeconfig: str) -> list[dict[str, Any]]:
    """Scrape configs for a ``monitoring.coreos.com/v1`` PodMonitor."""
    namespace, name = monitor["metadata"]["namespace"], monitor["metadata"]["name"]
    spec = monitor["spec"]
    configs = []
    for index, endpoint in enumerate(spec["podMetricsEndpoints"]):
        port = endpoint["port"]
        relabels = [
            {
                "action": "drop",
                "source_labels": ["__meta_kubernetes_pod_phase"],
                "regex": "(Failed|Succeeded)",
            },
            *_selector_relabels(spec.get("selector") or {}, "__meta_kubernetes_pod"),
            {
                "action": "keep",
                "source_labels": ["__meta_kubernetes_pod_container_port_name"],
                "regex": re.escape(port),
            },
            {
                "action": "replace",
                "source_labels": ["__meta_kubernetes_namespace"],
                "target_label": "namespace",
            },
            {
                "action": "replace",
                "source_labels": ["__meta_kubernetes_pod_container_name"],
                "target_label": "container",
            },
            {"action": "replace", "source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            *_copy_labels(spec.get("podTargetLabels") or [], "__meta_kubernetes_pod"),
            {"action": "replace", "target_label": "job", "replacement": f"{namespace}/{name}"},
            {"action": "replace", "target_label": "endpoint", "replacement": port},
        ]
        configs.append(
            {
                "job_name": f"podMonitor/{namespace}/{name}/{index}",
                "kubernetes_sd_configs": [
                    {"role": "pod", "kubeconfig_file": kubeconfig, **_namespaces(monitor)}
                ],
                "relabel_configs": relabels,
                **_endpoint_options(endpoint),
            }
        )
    return configs


def scrape_configs(monitor: dict[str, Any], kubeconfig: str) -> list[dict[str, Any]]:
    """Scrape configs for a monitor (a PodMonitor: the harness's Pod IPs are loopback addresses, which
    EndpointSlices refuse, so Services here have no endpoints for a ServiceMonitor to follow)."""
    if monitor["kind"] != "PodMonitor":
        raise ValueError(f"not a PodMonitor: {monitor['kind']}")
    return pod_monitor(monitor, kubeconfig)
