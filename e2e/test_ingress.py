"""The loopback ingress: nginx configured from an Ingress as ingress-nginx would be, in front of real worker
processes at the kwok Pod addresses; Pods leaving and joining change its upstreams, and clients that lose
their worker reconnect through it to another."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from e2e.ingress import LoopbackIngress
from e2e.kube import apply, kubectl
from e2e.podrunner import LoopbackKubelet
from tests.harness.ingress_nginx import ingress_manifest

SECRET = "loopback-ingress-jwt-secret-long-enough"
HOST = "ws.e2e.test"
LABELS = {"app": "ingress-worker"}


def objects(replicas: int) -> list[dict[str, Any]]:
    env = {
        "RESONANCE_ENGINE": "memory",
        "RESONANCE_JWT_SECRET": SECRET,
        "RESONANCE_CLIENT_IP_HEADER": "X-Forwarded-For",
        "RESONANCE_TRUSTED_PROXIES": '["127.0.0.1/32"]',
        "RESONANCE_SHUTDOWN_DRAIN_DEADLINE_SECONDS": "2",
        "RESONANCE_LOG_JSON": "false",
    }
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "ingress-worker"},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": LABELS},
                "template": {
                    "metadata": {"labels": LABELS},
                    "spec": {
                        "terminationGracePeriodSeconds": 5,
                        "containers": [
                            {
                                "name": "worker",
                                "image": "resonance-worker:e2e",
                                "ports": [{"name": "http", "containerPort": 8000}],
                                "env": [
                                    *({"name": k, "value": v} for k, v in env.items()),
                                    {
                                        "name": "RESONANCE_NODE_NAME",
                                        "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                                    },
                                ],
                            }
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "ingress-worker"},
            "spec": {"selector": LABELS, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
        },
        ingress_manifest(
            "realtime",
            HOST,
            "ingress-worker",
            annotations={
                "nginx.ingress.kubernetes.io/proxy-read-timeout": "3600",
                "nginx.ingress.kubernetes.io/proxy-send-timeout": "3600",
            },
        ),
    ]


@pytest.fixture
def stack(namespace: str, tmp_path: Path) -> Iterator[tuple[LoopbackKubelet, LoopbackIngress]]:
    for body in objects(2):
        apply(body, namespace=namespace)
    with (
        LoopbackKubelet(namespace, "app=ingress-worker", workdir=tmp_path / "pods") as kubelet,
        LoopbackIngress(namespace, "realtime", workdir=tmp_path / "nginx", poll_seconds=0.5) as ingress,
    ):
        yield kubelet, ingress


async def connect(ingress: LoopbackIngress, source: str) -> tuple[aiohttp.ClientSession, str]:
    """A client through the proxy; returns the session and the node that answered its connect."""
    import jwt

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0)))
    url = f"ws://{ingress.connect_to}/connection/websocket"
    ws = await session.ws_connect(url, headers={"Host": HOST})
    token = jwt.encode({"sub": f"u-{source}"}, SECRET, algorithm="HS256")
    await ws.send_str(json.dumps({"id": 1, "connect": {"token": token}}))
    reply = json.loads((await ws.receive(timeout=10)).data.splitlines()[0])
    assert "connect" in reply, reply
    return session, str(reply["connect"].get("node", ""))


async def test_pods_become_upstreams_and_clients_move_with_them(
    stack: tuple[LoopbackKubelet, LoopbackIngress], namespace: str
) -> None:
    kubelet, ingress = stack
    endpoints = await kubelet.wait_endpoints_async(2, timeout=90)
    upstreams = await ingress.wait_upstreams_async(2, timeout=30)
    assert sorted((e.ip, e.port) for e in endpoints) == upstreams
    sessions = []
    try:
        nodes = set()
        for n in range(4):  # round robin over the two Pods
            session, node = await connect(ingress, f"127.0.0.{20 + n}")
            sessions.append(session)
            nodes.add(node)
        assert len(nodes) == 2, nodes
        # Scaled to one Pod: the other leaves the upstreams at once (its worker drains), and every new
        # client lands on the one that stays.
        kubectl("scale", "deployment", "ingress-worker", "--replicas=1", "-n", namespace)
        (stays,) = await ingress.wait_upstreams_async(1, timeout=30)
        remaining = {e.pod for e in endpoints if (e.ip, e.port) == stays}
        assert len(remaining) == 1
        for n in range(3):
            session, node = await connect(ingress, f"127.0.0.{30 + n}")
            sessions.append(session)
            assert node in remaining, (node, remaining)
        assert ingress.proxy.reloads >= 1
        assert not ingress.errors, ingress.errors
    finally:
        for session in sessions:
            await session.close()
