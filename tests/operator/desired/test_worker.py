from __future__ import annotations

from typing import Any

from resonance_operator.desired import meta, worker

from tests.operator import fixtures


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def test_deployment_from_the_minimal_spec() -> None:
    deployment = worker.deployment(fixtures.cluster())
    assert deployment["metadata"]["name"] == "demo-worker"
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == "uid-1234"
    assert meta.SPEC_HASH_ANNOTATION in deployment["metadata"]["annotations"]
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    assert spec["selector"]["matchLabels"] == meta.selector_labels(fixtures.cluster(), meta.WORKER)
    assert spec["strategy"]["rollingUpdate"] == {"maxSurge": "25%", "maxUnavailable": 0}
    pod = spec["template"]["spec"]
    # Long enough to drain: the default drain window (300 s) plus the shutdown margin.
    assert pod["terminationGracePeriodSeconds"] == 310
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
    container = _container(deployment)
    assert container["image"] == "registry.example/resonance-worker:1.0"
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert container["envFrom"] == [{"configMapRef": {"name": "demo-worker-settings"}}]
    assert {
        "name": "RESONANCE_JWT_SECRET",
        "valueFrom": {"secretKeyRef": {"name": "demo-jwt", "key": "secret"}},
    } in container["env"]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # No CPU or memory in the spec: the capacity model's pod (desired/sizing.py, docs/capacity.md).
    assert container["resources"] == {
        "requests": {"cpu": "700m", "memory": "384Mi"},
        "limits": {"memory": "384Mi"},
    }


def test_a_cpu_or_memory_in_the_spec_replaces_its_default() -> None:
    memory = {"memory": "384Mi"}
    for resources, expected in (
        # Kubernetes copies a CPU limit into the request.
        ({"limits": {"cpu": "2"}}, {"requests": memory, "limits": {"cpu": "2", **memory}}),
        ({"requests": {"cpu": "1"}}, {"requests": {"cpu": "1", **memory}, "limits": memory}),
        ({"limits": {"memory": "1Gi"}}, {"requests": {"cpu": "700m"}, "limits": {"memory": "1Gi"}}),
        ({"requests": {"cpu": "1", "memory": "1Gi"}}, {"requests": {"cpu": "1", "memory": "1Gi"}}),
    ):
        deployment = worker.deployment(fixtures.cluster(fixtures.with_worker(resources=resources)))
        assert _container(deployment)["resources"] == expected


def test_deployment_options() -> None:
    cluster = fixtures.cluster(
        {
            **fixtures.with_worker(
                replicas=5,
                terminationGracePeriodSeconds=900,
                resources={"requests": {"cpu": "100m"}, "limits": {"memory": "256Mi"}},
                env=[{"name": "EXTRA", "value": "1"}],
                topologySpread={"enabled": False},
                scheduling={
                    "nodeSelector": {"type": "kwok"},
                    "tolerations": [{"key": "k", "operator": "Exists"}],
                },
            ),
            "rollout": {"rolling": {"maxSurge": "1", "maxUnavailable": "10%"}},
        }
    )
    deployment = worker.deployment(cluster)
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 5
    assert pod["terminationGracePeriodSeconds"] == 900
    assert "topologySpreadConstraints" not in pod
    assert pod["nodeSelector"] == {"type": "kwok"}
    assert pod["tolerations"] == [{"key": "k", "operator": "Exists"}]
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": "10%"}
    container = _container(deployment)
    assert container["resources"] == {"requests": {"cpu": "100m"}, "limits": {"memory": "256Mi"}}
    assert container["env"][-1] == {"name": "EXTRA", "value": "1"}


def test_settings_change_rolls_the_pods_but_replicas_do_not() -> None:
    base = worker.deployment(fixtures.cluster())
    relogged = worker.deployment(fixtures.cluster(fixtures.with_worker(settings={"logLevel": "DEBUG"})))
    scaled = worker.deployment(fixtures.cluster(fixtures.with_worker(replicas=7)))
    annotation = meta.CONFIG_HASH_ANNOTATION

    def config_hash(deployment: dict[str, Any]) -> str:
        return str(deployment["spec"]["template"]["metadata"]["annotations"][annotation])

    assert config_hash(base) != config_hash(relogged)
    assert config_hash(base) == config_hash(scaled)
    assert meta.spec_hash(base) != meta.spec_hash(scaled)


def test_autoscaled_deployment_leaves_replicas_to_the_hpa() -> None:
    cluster = fixtures.cluster(
        fixtures.with_worker(
            autoscaling={"enabled": True, "minReplicas": 3, "maxReplicas": 9, "targetConnectionsPerPod": 500}
        )
    )
    assert "replicas" not in worker.deployment(cluster)["spec"]
    hpa = worker.horizontal_pod_autoscaler(cluster)
    assert hpa is not None
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "demo-worker",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 9)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 70
    assert hpa["spec"]["metrics"][1]["pods"]["target"] == {"type": "AverageValue", "averageValue": "500"}
    cpu_only = worker.horizontal_pod_autoscaler(
        fixtures.cluster(fixtures.with_worker(autoscaling={"enabled": True}))
    )
    assert cpu_only is not None and len(cpu_only["spec"]["metrics"]) == 1
    assert worker.horizontal_pod_autoscaler(fixtures.cluster()) is None


def test_service() -> None:
    service = worker.service(fixtures.cluster())
    assert service["spec"]["selector"] == meta.selector_labels(fixtures.cluster(), meta.WORKER)
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]


def test_ingress_for_nginx_with_tls() -> None:
    cluster = fixtures.cluster(
        {
            **fixtures.with_worker(),
            "ingress": {
                "enabled": True,
                "className": "nginx",
                "host": "rt.example.com",
                "path": "/rt/",
                "tls": {"secretName": "rt-tls"},
                "annotations": {"nginx.ingress.kubernetes.io/proxy-read-timeout": "7200"},
            },
        }
    )
    ingress = worker.ingress(cluster)
    assert ingress is not None
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "7200"  # the user's value wins
    assert annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"] == "3600"
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    # The body size follows the worker's message limit; the timeouts outlast two pings by far.
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == "65536"
    from resonance_worker.settings import WorkerSettings

    assert int(annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"]) > 2 * (
        WorkerSettings.model_fields["ping_interval_seconds"].default
    )
    small = fixtures.cluster(
        {
            **fixtures.with_worker(limits={"messageBytes": 4096}),
            "ingress": {"enabled": True, "className": "nginx", "host": "rt.example.com"},
        }
    )
    assert (worker.ingress(small) or {})["metadata"]["annotations"][
        "nginx.ingress.kubernetes.io/proxy-body-size"
    ] == "4096"
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"hosts": ["rt.example.com"], "secretName": "rt-tls"}]
    rule = ingress["spec"]["rules"][0]
    assert rule["host"] == "rt.example.com"
    assert rule["http"]["paths"][0]["backend"]["service"] == {"name": "demo-worker", "port": {"name": "http"}}
    assert worker.websocket_endpoint(cluster) == "wss://rt.example.com/rt/connection/websocket"


def test_ingress_without_class_or_tls_and_disabled() -> None:
    plain = fixtures.cluster({**fixtures.with_worker(), "ingress": {"enabled": True, "host": "rt.local"}})
    ingress = worker.ingress(plain)
    assert ingress is not None
    assert "ingressClassName" not in ingress["spec"] and "tls" not in ingress["spec"]
    assert meta.SPEC_HASH_ANNOTATION in ingress["metadata"]["annotations"]
    assert worker.websocket_endpoint(plain) == "ws://rt.local/connection/websocket"
    assert worker.ingress(fixtures.cluster()) is None
    assert (
        worker.websocket_endpoint(fixtures.cluster()) == "ws://demo-worker.team-a.svc:80/connection/websocket"
    )


def test_pod_disruption_budget() -> None:
    default = worker.pod_disruption_budget(fixtures.cluster())
    assert default is not None and default["spec"]["maxUnavailable"] == 1
    minimum = worker.pod_disruption_budget(
        fixtures.cluster({**fixtures.with_worker(), "podDisruptionBudget": {"minAvailable": "50%"}})
    )
    assert (
        minimum is not None
        and minimum["spec"]["minAvailable"] == "50%"
        and "maxUnavailable" not in minimum["spec"]
    )
    assert (
        worker.pod_disruption_budget(
            fixtures.cluster({**fixtures.with_worker(), "podDisruptionBudget": {"enabled": False}})
        )
        is None
    )


def test_service_monitor_only_when_enabled_and_its_crd_exists() -> None:
    enabled = fixtures.cluster(
        {
            **fixtures.with_worker(),
            "observability": {
                "serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "kps"}}
            },
        }
    )
    monitor = worker.service_monitor(enabled, crd_present=True)
    assert monitor is not None
    assert monitor["metadata"]["labels"]["release"] == "kps"
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s"}]
    assert worker.service_monitor(enabled, crd_present=False) is None
    assert worker.service_monitor(fixtures.cluster(), crd_present=True) is None
    # Both monitors copy the cluster and revision labels onto the series.
    assert monitor["spec"]["podTargetLabels"] == [
        "resonance.liminal.dev/cluster",
        "resonance.liminal.dev/revision",
    ]


def test_pod_monitor_selects_every_revision_and_labels_each_pod_once() -> None:
    enabled = fixtures.cluster(
        {
            **fixtures.with_worker(),
            "observability": {
                "podMonitor": {"enabled": True, "interval": "10s", "labels": {"release": "kps"}}
            },
            "rollout": {"metricsPath": "/metrics"},
        }
    )
    monitor = worker.pod_monitor(enabled)
    assert monitor is not None and monitor["kind"] == "PodMonitor"
    assert monitor["metadata"]["name"] == "demo-worker"
    assert monitor["metadata"]["labels"]["release"] == "kps"
    spec = monitor["spec"]
    # The selector carries no revision: stable, canary, preview and draining Pods alike.
    assert spec["selector"] == {
        "matchLabels": {"resonance.liminal.dev/cluster": "demo", "app.kubernetes.io/component": "worker"}
    }
    assert spec["podMetricsEndpoints"] == [{"port": "http", "path": "/metrics", "interval": "10s"}]
    assert spec["podTargetLabels"] == ["resonance.liminal.dev/cluster", "resonance.liminal.dev/revision"]
    assert worker.pod_monitor(fixtures.cluster()) is None
