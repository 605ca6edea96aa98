"""The loopback kubelet: a Deployment of the worker on kwok becomes real worker
processes answering at their Pod IPs, with the Pod's environment resolved
through the API; a deleted Pod's process drains (SIGTERM) and exits."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from e2e.kube import apply, kubectl, kubectl_json, wait_until
from e2e.podrunner import EnvError, LoopbackKubelet, expand, pod_field

API_KEY = "podrunner-test-key"
SELECTOR = "app=podrunner-worker"
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def from_key(kind: str, name: str, key: str, *, optional: bool = False) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": name, "key": key}
    if optional:
        ref["optional"] = True
    return {"valueFrom": {kind: ref}}


def worker_env() -> list[dict[str, Any]]:
    return [
        {"name": "RESONANCE_ENGINE", "value": "redis"},
        {"name": "RESONANCE_REDIS_URL", "value": "redis://redis.cluster.svc:6379/0"},
        {"name": "RESONANCE_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "RESONANCE_API_KEY", **from_key("secretKeyRef", "worker-secrets", "api-key")},
        {"name": "RESONANCE_JWT_SECRET", **from_key("secretKeyRef", "worker-secrets", "jwt")},
        {"name": "RESONANCE_LOG_LEVEL", **from_key("configMapKeyRef", "worker-settings", "level")},
        {"name": "OPTIONAL_MISSING", **from_key("secretKeyRef", "absent", "x", optional=True)},
        {"name": "GREETING", "value": "node $(RESONANCE_NODE_NAME) $$(kept)"},
        {"name": "RESONANCE_ALLOW_ANONYMOUS", "value": "$(CM_RESONANCE_ALLOW_ANONYMOUS)"},
    ]


def worker_objects(replicas: int) -> list[dict[str, Any]]:
    labels = {"app": "podrunner-worker", "resonance.liminal.dev/revision": "rev-a"}
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "worker-secrets"},
            "stringData": {"api-key": API_KEY, "jwt": "podrunner-jwt-secret-long-enough-for-hs256"},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "worker-settings"},
            "data": {"RESONANCE_LOG_LEVEL": "INFO", "level": "INFO", "RESONANCE_ALLOW_ANONYMOUS": "true"},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "podrunner-worker"},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "podrunner-worker"}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "terminationGracePeriodSeconds": 20,
                        "containers": [
                            {"name": "sidecar", "image": "busybox"},
                            {
                                "name": "worker",
                                "image": "resonance-worker:e2e",
                                "ports": [{"name": "http", "containerPort": 8000}],
                                "envFrom": [{"configMapRef": {"name": "worker-settings"}, "prefix": "CM_"}],
                                "env": worker_env(),
                            },
                        ],
                    },
                },
            },
        },
    ]


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with DIRECT.open(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def test_kubelet_runs_a_real_worker_per_pod_and_drains_deleted_ones(
    namespace: str, tmp_path: Path
) -> None:
    for manifest in worker_objects(replicas=2):
        apply(manifest, namespace=namespace)
    async with LoopbackKubelet(
        namespace,
        SELECTOR,
        env_overrides={"RESONANCE_ENGINE": "memory"},
        env_unset=("RESONANCE_REDIS_URL",),
        poll_seconds=0.3,
        workdir=tmp_path,
    ) as kubelet:
        endpoints = await kubelet.wait_endpoints_async(2, timeout=90)
        for endpoint in endpoints:
            assert ipaddress.ip_address(endpoint.ip) in ipaddress.ip_network("127.0.0.0/8")
            assert endpoint.ip != "127.0.0.1"
            assert endpoint.port == 8000
            assert endpoint.revision == "rev-a"
            assert get(endpoint.url("/health")) == (200, {"status": "ok"})
            # The API key came from the Secret: the drain API answers with it.
            status, state = get(endpoint.url("/drain"), {"Authorization": f"apikey {API_KEY}"})
            assert (status, state["draining"]) == (200, False)
            env = kubelet.env(endpoint.pod)
            assert env["RESONANCE_NODE_NAME"] == endpoint.pod
            assert env["RESONANCE_ENGINE"] == "memory"  # the override wins over the spec
            assert env["RESONANCE_HOST"] == endpoint.ip
            assert env["RESONANCE_LOG_LEVEL"] == "INFO"
            assert env["CM_level"] == "INFO"
            assert env["GREETING"] == f"node {endpoint.pod} $(kept)"
            assert env["RESONANCE_ALLOW_ANONYMOUS"] == "true"
            assert "OPTIONAL_MISSING" not in env
            assert "RESONANCE_REDIS_URL" not in env  # env_unset: left out although the spec sets it
            assert "resonance-worker listening on" in kubelet.log(endpoint.pod)

        # A crashed process is started again, as with restartPolicy: Always.
        crashed = next(p for p in kubelet.processes() if p.pod == endpoints[1].pod)
        crashed.process.kill()
        await asyncio.to_thread(
            wait_until, lambda: crashed.restarts == 1 and crashed.healthy, timeout=30, what="a restart"
        )
        assert await kubelet.wait_endpoints_async(2, timeout=30) == endpoints

        # A client on the first Pod; deleting the Pod drains it: the client
        # is told 3001 and the process exits 0.
        doomed = endpoints[0]
        async with aiohttp.ClientSession() as http, http.ws_connect(doomed.ws_url) as ws:
            await ws.send_str('{"id": 1, "connect": {}}')
            reply = await ws.receive_json(timeout=10)
            assert "connect" in reply
            kubectl("delete", "pod", doomed.pod, "-n", namespace, "--wait=false")
            closing = await ws.receive(timeout=30)
            assert closing.type is aiohttp.WSMsgType.CLOSE
            assert closing.data == 3001
        assert await kubelet.wait_finished_async(doomed.pod, timeout=30) == 0
        assert "drain started" in kubelet.log(doomed.pod)

        # The Deployment replaces the Pod; the kubelet starts its process.
        replaced = await kubelet.wait_endpoints_async(2, timeout=90)
        assert doomed.pod not in [e.pod for e in replaced]
        # (A listing that failed under load is retried at the next poll; nothing else may fail.)
        assert [e for e in kubelet.errors if not e.startswith("list pods")] == []

        # Scaled to zero: every process goes; leaving the context has nothing left to stop.
        kubectl("scale", "deployment", "podrunner-worker", "-n", namespace, "--replicas=0")
        await asyncio.to_thread(
            wait_until, lambda: not kubelet.processes(), timeout=60, what="every worker process to exit"
        )
        finished = kubelet.finished()
        assert all(code == 0 for _, code in finished), (
            finished,
            {pod: kubelet.log(pod)[-1500:] for pod, code in finished if code != 0},
        )


async def test_kubelet_reports_pods_it_cannot_start(namespace: str, tmp_path: Path) -> None:
    manifests = worker_objects(replicas=1)
    deployment = manifests[2]
    worker = deployment["spec"]["template"]["spec"]["containers"][1]
    worker["env"].append({"name": "BROKEN", **from_key("secretKeyRef", "worker-secrets", "nope")})
    for manifest in manifests:
        apply(manifest, namespace=namespace)
    with LoopbackKubelet(namespace, SELECTOR, poll_seconds=0.3, workdir=tmp_path) as kubelet:
        await asyncio.to_thread(
            wait_until, lambda: kubelet.errors, timeout=60, what="the kubelet to report the missing key"
        )
        assert "has no key 'nope'" in kubelet.errors[0]
        assert kubelet.endpoints() == []
    pods = kubectl_json("get", "pods", "-n", namespace, "-l", SELECTOR)["items"]
    assert pods  # the Pod exists; only its process could not start


def test_expansion_and_fields_follow_kubernetes() -> None:
    assert expand("$(A)-$(B)-$$(A)-$(MISSING)", {"A": "1", "B": "2"}) == "1-2-$(A)-$(MISSING)"
    pod = {
        "metadata": {"name": "p", "namespace": "n", "uid": "u", "labels": {"app": "x"}},
        "spec": {"nodeName": "kwok-node-0"},
        "status": {"podIP": "127.244.0.7"},
    }
    assert pod_field(pod, "metadata.labels['app']") == "x"
    assert pod_field(pod, "status.podIP") == "127.244.0.7"
    assert pod_field(pod, "spec.nodeName") == "kwok-node-0"
    with pytest.raises(EnvError):
        pod_field(pod, "status.hostIP")


async def test_leaving_the_kubelet_stops_its_processes(namespace: str, tmp_path: Path) -> None:
    for manifest in worker_objects(replicas=1):
        apply(manifest, namespace=namespace)
    kubelet = LoopbackKubelet(
        namespace, SELECTOR, env_overrides={"RESONANCE_ENGINE": "memory"}, workdir=tmp_path
    )
    async with kubelet:
        [endpoint] = await kubelet.wait_endpoints_async(1, timeout=90)
        pid = kubelet.processes()[0].process.pid
    assert kubelet.finished() == [(endpoint.pod, 0)]
    assert kubelet.processes() == []
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
