"""A real Prometheus scraping real workers the way the Prometheus Operator would make it: the scrape
configs come from a PodMonitor (``monitors.py``), Prometheus discovers the Pods through the API
server, and the podrunner's workers answer at their Pod IPs.

During a replica-ratio canary a canary Pod sits behind two Services (the worker Service selects every
revision, the canary Service the canary), so a ServiceMonitor over both would scrape it twice; a
PodMonitor selects Pods, so each is one target, labelled with its revision.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.kube import apply
from e2e.podrunner import LoopbackKubelet
from e2e.telemetry import monitors
from tests.harness.prometheus import BIN, Prometheus

COMPONENT = {"app.kubernetes.io/component": "worker", "resonance.liminal.dev/cluster": "prom"}


def deployment(revision: str, replicas: int) -> dict[str, Any]:
    labels = {**COMPONENT, "resonance.liminal.dev/revision": revision}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"prom-worker-{revision}"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [
                        {
                            "name": "worker",
                            "image": "resonance-worker:e2e",
                            "ports": [{"name": "http", "containerPort": 8000}],
                        }
                    ],
                },
            },
        },
    }


def pod_monitor(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": "prom", "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": COMPONENT},
            "podMetricsEndpoints": [{"port": "http", "path": "/metrics", "interval": "1s"}],
            "podTargetLabels": ["resonance.liminal.dev/revision"],
        },
    }


@pytest.fixture
def canary_workers(namespace: str, tmp_path: Path) -> Iterator[LoopbackKubelet]:
    """Three stable and one canary worker Pods, a real worker behind every Pod."""
    apply(deployment("stable", 3), namespace=namespace)
    apply(deployment("canary", 1), namespace=namespace)
    selector = ",".join(f"{k}={v}" for k, v in COMPONENT.items())
    with LoopbackKubelet(
        namespace,
        selector,
        env_overrides={"RESONANCE_ENGINE": "memory"},
        poll_seconds=0.3,
        workdir=tmp_path / "pods",
    ) as kubelet:
        kubelet.wait_endpoints(4, timeout=90)
        yield kubelet


REVISION_OF_POD = 'count by (pod, resonance_liminal_dev_revision) (resonance_connections{{namespace="{}"}})'


def test_a_pod_monitor_scrapes_each_worker_once_with_its_revision(
    canary_workers: LoopbackKubelet, namespace: str, kubeconfig: str, tmp_path: Path
) -> None:
    if not (BIN / "prometheus").exists():
        pytest.fail("no prometheus: run `make binaries`")
    pods = {e.pod: e.revision for e in canary_workers.endpoints()}
    configs = monitors.scrape_configs(pod_monitor(namespace), kubeconfig)
    prometheus = Prometheus(tmp_path / "prometheus", configs).start()
    try:
        up = prometheus.wait_for(f'up{{job="{namespace}/prom"}} == 1', lambda r: len(r) == 4)
        assert {labels["pod"]: labels["resonance_liminal_dev_revision"] for labels, _ in up} == pods
        assert {labels["namespace"] for labels, _ in up} == {namespace}
        assert {(labels["container"], labels["endpoint"]) for labels, _ in up} == {("worker", "http")}
        # Each Pod is one target, canary included.
        once = prometheus.query(f'count by (pod) (up{{namespace="{namespace}"}})')
        assert {labels["pod"]: value for labels, value in once} == dict.fromkeys(pods, 1.0)
        # The workers' own series, one per Pod, with the revision to split a rollout by.
        per_revision = prometheus.wait_for(
            f"count by (resonance_liminal_dev_revision) ({REVISION_OF_POD.format(namespace)})",
            lambda r: len(r) == 2,
        )
        assert {labels["resonance_liminal_dev_revision"]: v for labels, v in per_revision} == {
            "stable": 3,
            "canary": 1,
        }
    finally:
        prometheus.stop()


def test_monitor_translation_follows_the_prometheus_operator() -> None:
    configs = monitors.scrape_configs(pod_monitor("apps"), "/kubeconfig")
    assert [c["job_name"] for c in configs] == ["podMonitor/apps/prom/0"]
    config = configs[0]
    sd = {"role": "pod", "kubeconfig_file": "/kubeconfig", "namespaces": {"names": ["apps"]}}
    assert config["kubernetes_sd_configs"] == [sd]
    assert (config["metrics_path"], config["scrape_interval"], config["honor_labels"]) == (
        "/metrics",
        "1s",
        False,
    )
    keep = [r for r in config["relabel_configs"] if r["action"] == "keep"]
    assert keep[0]["source_labels"] == [
        "__meta_kubernetes_pod_label_app_kubernetes_io_component",
        "__meta_kubernetes_pod_labelpresent_app_kubernetes_io_component",
    ]
    assert keep[-1] == {
        "action": "keep",
        "source_labels": ["__meta_kubernetes_pod_container_port_name"],
        "regex": "http",
    }
    everywhere = pod_monitor("apps")
    everywhere["spec"]["namespaceSelector"] = {"any": True}
    everywhere["spec"]["selector"]["matchExpressions"] = [
        {"key": "tier", "operator": "NotIn", "values": ["batch"]}
    ]
    config = monitors.scrape_configs(everywhere, "/kubeconfig")[0]
    assert config["kubernetes_sd_configs"] == [{"role": "pod", "kubeconfig_file": "/kubeconfig"}]
    drop = {
        "action": "drop",
        "source_labels": ["__meta_kubernetes_pod_label_tier", "__meta_kubernetes_pod_labelpresent_tier"],
        "regex": "(batch);true",
    }
    assert drop in config["relabel_configs"]
    with pytest.raises(ValueError, match="not a PodMonitor"):
        monitors.scrape_configs({"kind": "ServiceMonitor"}, "/kubeconfig")
