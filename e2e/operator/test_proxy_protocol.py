"""``spec.worker.clientAddress.proxyProtocol`` as a cluster admin sets it: the operator renders it, a real
worker runs with exactly the environment it rendered (the podrunner, at the kwok Pod address), and Debian
nginx's ``stream`` with ``proxy_protocol on`` stands in front of it as a TCP load balancer would. Clients
from several loopback addresses all reach the worker from nginx's address, yet each counts as itself: the
per-address limit refuses exactly the over-limit connections of one address."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest

from e2e.crowd import address_probe
from e2e.kube import apply, kubectl_json
from e2e.operator.conftest import RunningOperator, resonance_cluster, wait_ready
from e2e.podrunner import LoopbackKubelet
from tests.harness.nginx import STREAM_MODULE, NginxProxy, stream_proxy_conf

PER_ADDRESS = 3


def test_the_cr_turns_on_the_proxy_protocol_and_each_client_behind_nginx_counts_as_itself(
    operator: RunningOperator, namespace: str, tmp_path: Path
) -> None:
    if not STREAM_MODULE.exists():
        pytest.fail("nginx's stream module is missing: run `make deps` (libnginx-mod-stream)")
    name = "proxied"
    apply(
        resonance_cluster(
            name,
            {
                "worker": {
                    "image": "resonance-worker:e2e",
                    "replicas": 1,
                    "clientAddress": {"proxyProtocol": True},
                    "limits": {"connectionsPerAddress": PER_ADDRESS},
                },
                "redis": {"managed": {"persistence": {"enabled": False}}},
            },
        ),
        namespace=namespace,
    )
    wait_ready(name, namespace)
    deployment = kubectl_json("get", "deployment", f"{name}-worker", "-n", namespace)
    configmap = kubectl_json("get", "configmap", f"{name}-worker-settings", "-n", namespace)
    rendered = {**configmap.get("data", {})}
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        rendered.update({e["name"]: e.get("value") for e in container.get("env", []) if "value" in e})
    assert rendered["RESONANCE_PROXY_PROTOCOL"] == "true"
    secret = kubectl_json("get", "secret", f"{name}-jwt", "-n", namespace)
    token_secret = base64.b64decode(secret["data"]["secret"]).decode()
    with LoopbackKubelet(
        namespace,
        f"app.kubernetes.io/component=worker,resonance.liminal.dev/cluster={name}",
        # One worker: its own count is the limit (the managed Redis's Pod runs nothing).
        env_overrides={"RESONANCE_ENGINE": "memory", "RESONANCE_LOG_JSON": "false"},
        env_unset=("RESONANCE_REDIS_URL",),
        workdir=tmp_path / "pods",
    ) as kubelet:
        (endpoint,) = kubelet.wait_endpoints(1, timeout=120)
        nginx = NginxProxy(tmp_path / "nginx")
        try:
            nginx.start(stream_proxy_conf(nginx, f"{endpoint.ip}:{endpoint.port}"))
            crowded, others = "127.0.8.1", ["127.0.8.2", "127.0.8.3", "127.0.8.4"]
            probe = asyncio.run(
                address_probe(
                    connect_to=nginx.listen,
                    host="ws.e2e.test",
                    token_secret=token_secret,
                    per_address={crowded: PER_ADDRESS + 2, **dict.fromkeys(others, PER_ADDRESS)},
                )
            )
        finally:
            nginx.stop()
    # Through nginx every TCP peer of the worker is nginx: without the header all 14 would share one limit.
    assert dict(probe.accepted) == {address: PER_ADDRESS for address in (crowded, *others)}
    assert probe.refused == {crowded: [3504, 3504]}
