"""Issue 15 as a cluster admin deploys it: a cluster made from ``examples/full.yaml`` by the operator, its
workers started with exactly the environment the operator rendered (the podrunner, at the kwok Pod
addresses), nginx configured as ingress-nginx would be for the generated Ingress in front of them, and
thousands of clients from hundreds of source addresses through it."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
import yaml
from resonance_operator.desired import sizing

from e2e.crowd import address_probe, chat_crowd
from e2e.ingress import LoopbackIngress
from e2e.kube import apply, kubectl, kubectl_json, wait_until
from e2e.operator.conftest import REPO, RunningOperator, wait_ready
from e2e.podrunner import LoopbackKubelet
from tests.harness.redis import RedisServer

# The managed Redis and Neo4j are kwok Pods that run nothing: the workers get a real Redis instead, and
# no Neo4j (the living graph then runs without its store, as the worker does when Neo4j is away).
NEO4J = ("RESONANCE_NEO4J__URI", "RESONANCE_NEO4J__USER", "RESONANCE_NEO4J__PASSWORD")


def full_example() -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load((REPO / "examples" / "full.yaml").read_text())
    return body


def jwt_secret(name: str, namespace: str) -> str:
    secret = kubectl_json("get", "secret", f"{name}-jwt", "-n", namespace)
    return base64.b64decode(secret["data"]["secret"]).decode()


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


def test_full_example_serves_two_thousand_clients_through_the_ingress(
    operator: RunningOperator, namespace: str, tmp_path: Path, redis: RedisServer
) -> None:
    example = full_example()
    apply(example, namespace=namespace)
    wait_ready("full", namespace, timeout=180)
    with (
        LoopbackKubelet(
            namespace,
            "app.kubernetes.io/component=worker",
            env_overrides={"RESONANCE_REDIS_URL": redis.url, "RESONANCE_LOG_JSON": "false"},
            env_unset=NEO4J,
            workdir=tmp_path / "pods",
        ) as kubelet,
        LoopbackIngress(namespace, "full", workdir=tmp_path / "nginx") as ingress,
    ):
        endpoints = kubelet.wait_endpoints(3, timeout=120)
        ingress.wait_upstreams(3)
        # The limits the workers run with are the operator's: 384Mi fits 18,329 connections by the capacity
        # model (above the 2,000 target), 100 per client address, and the client is read from X-Forwarded-For
        # behind nginx.
        env = kubelet.env(endpoints[0].pod)
        assert env["RESONANCE_LIMITS__MAX_CONNECTIONS"] == str(sizing.memory_fits("384Mi")) == "18329"
        assert env["RESONANCE_LIMITS__MAX_CONNECTIONS_PER_IP"] == "100"
        assert env["RESONANCE_CLIENT_IP_HEADER"] == "X-Forwarded-For"
        assert "127.0.0.1/32" in json.loads(env["RESONANCE_TRUSTED_PROXIES"])
        annotations = ingress_annotations(namespace)
        assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == "65536"
        assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"

        secret = jwt_secret("full", namespace)
        result = chat_crowd(
            ws_url=ingress.ws_url,
            connect_to=ingress.connect_to,
            token_secret=secret,
            connections=2000,
            source_addresses=200,
        )
        publish = {k: v for k, v in result["publish"].items() if k != "latency_by_second"}
        print(
            "full example through the ingress:",
            json.dumps({"connect": result["connect"], "publish": publish}),
        )
        assert result["connect"]["connected"] == 2000, result["connect"]
        assert result["publish"]["received"] == result["publish"]["expected_deliveries"] > 0, publish
        # On this shared 2-core machine a Redis call may time out at the peak: such a publish is answered
        # with a temporary error (the client retries), never lost silently; anything else fails the test.
        assert result["publish"]["errors"] <= result["publish"]["published"] // 100, publish["first_errors"]
        assert all("'temporary': True" in error for error in publish["first_errors"]), publish["first_errors"]
        assert result["connect"]["errors"] == 0, result["connect"]["first_errors"]

        # The per-address limit counts the client behind nginx, across the three workers (Redis): one
        # address over it loses exactly its extra connections, its neighbours lose none.
        crowded, others = "127.0.9.1", [f"127.0.9.{n}" for n in range(2, 6)]
        probe = asyncio.run(
            address_probe(
                connect_to=ingress.connect_to,
                host=ingress.host,
                token_secret=secret,
                per_address={crowded: 106, **dict.fromkeys(others, 8)},
                timeout=60,
            )
        )
        print("per-address probe:", dict(probe.accepted), {a: len(r) for a, r in probe.refused.items()})
        assert probe.accepted[crowded] == 100 and probe.refused_count(crowded) == 6, probe
        assert all(probe.accepted[a] == 8 and probe.refused_count(a) == 0 for a in others), probe
        assert not ingress.errors, ingress.errors
        assert not kubelet.errors, kubelet.errors


def ingress_annotations(namespace: str) -> dict[str, str]:
    body = kubectl_json("get", "ingress", "full", "-n", namespace)
    annotations: dict[str, str] = body["metadata"].get("annotations", {})
    return annotations


def test_turning_autoscaling_on_for_a_live_cluster_keeps_its_replicas(
    operator: RunningOperator, namespace: str
) -> None:
    """Server-side apply resets a field no manager owns to its default: dropping ``spec.replicas`` from the
    operator's Deployment when the HPA takes over made 5 replicas 1 at once. Now the count is handed over."""
    body = full_example()
    body["metadata"]["name"] = "grows"
    body["spec"]["worker"]["replicas"] = 5
    body["spec"]["worker"]["autoscaling"]["enabled"] = False
    apply(body, namespace=namespace)
    wait_ready("grows", namespace, timeout=180)
    deployment = "grows-worker"
    wait_until(
        lambda: (
            kubectl_json("get", "deployment", deployment, "-n", namespace)["status"].get("readyReplicas") == 5
        ),
        timeout=120,
        what="5 ready workers",
    )
    kubectl(
        "patch",
        "rescl",
        "grows",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"worker":{"autoscaling":{"enabled":true,"minReplicas":3,"maxReplicas":20}}}}',
    )
    # Watch the Deployment while the operator hands the count to the HPA (a few resyncs, and one HPA sync
    # period of 15 s): never fewer than 5 wanted, never fewer than 5 ready.
    seen: list[tuple[int, int]] = []

    def handed_over() -> bool:
        live = kubectl_json("get", "deployment", deployment, "-n", namespace)
        seen.append((live["spec"].get("replicas", 0), live["status"].get("readyReplicas", 0)))
        managers = {
            entry["manager"]
            for entry in live["metadata"].get("managedFields", [])
            if "f:replicas" in entry.get("fieldsV1", {}).get("f:spec", {})
        }
        return "resonance-operator" not in managers and len(seen) >= 40

    hpa = wait_until(lambda: kubectl_json("get", "hpa", "-n", namespace)["items"], timeout=60, what="the HPA")
    assert hpa[0]["spec"]["scaleTargetRef"]["name"] == deployment
    wait_until(handed_over, timeout=120, what="replicas no longer the operator's", interval=0.5)
    assert min(wanted for wanted, _ in seen) >= 5, seen
    assert min(ready for _, ready in seen) >= 5, seen
    events = kubectl_json("get", "events", "-n", namespace, "--field-selector", "reason=AutoscalingHandover")
    assert any("keeps its 5 replicas" in event["message"] for event in events["items"]), events["items"]


class Protocol:
    """A raw Centrifugo-protocol client through the loopback ingress (JSON, one command a frame)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, session: aiohttp.ClientSession) -> None:
        self.ws, self.session = ws, session
        self.ids = itertools.count(1)
        self.pushes: list[dict[str, Any]] = []
        self.node = ""

    @classmethod
    async def connect(cls, ingress: LoopbackIngress, secret: str, user: str) -> Protocol:
        session = aiohttp.ClientSession()
        ws = await session.ws_connect(
            f"ws://{ingress.connect_to}/connection/websocket", headers={"Host": ingress.host}
        )
        client = cls(ws, session)
        # A person whose baseline and self-understanding are kept has consented to it (docs/data-rights.md:
        # without the claim nothing biometric, emotional or in the graph is stored).
        claims = {"sub": user, "consent": ["biometrics", "emotions", "graph"]}
        token = jwt.encode(claims, secret, algorithm="HS256")
        client.node = str((await client.call({"connect": {"token": token}}))["connect"].get("node", ""))
        return client

    async def call(self, command: dict[str, Any]) -> dict[str, Any]:
        ident = next(self.ids)
        await self.ws.send_str(json.dumps({"id": ident, **command}))
        while True:
            message = await self.ws.receive(timeout=30)
            assert message.type is aiohttp.WSMsgType.TEXT, (message.type, self.ws.close_code)
            for line in message.data.splitlines():
                reply = json.loads(line)
                if reply.get("id") == ident:
                    assert "error" not in reply, reply
                    return dict(reply)
                if "push" in reply:
                    self.pushes.append(reply["push"])

    async def rpc(self, method: str, data: Any) -> Any:
        return (await self.call({"rpc": {"method": method, "data": data}}))["rpc"].get("data")

    async def closed(self, timeout: float) -> int | None:
        """Wait for the server to close the connection (a draining worker); its close code."""
        async with asyncio.timeout(timeout):
            while not self.ws.closed:
                message = await self.ws.receive()
                if message.type is aiohttp.WSMsgType.TEXT:
                    self.pushes.extend(
                        json.loads(line)["push"] for line in message.data.splitlines() if '"push"' in line
                    )
                elif message.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSED,
                    aiohttp.WSMsgType.CLOSING,
                ):
                    break
        return self.ws.close_code

    async def close(self) -> None:
        await self.ws.close()
        await self.session.close()


def room_states(pushes: list[dict[str, Any]], user: str) -> list[dict[str, Any]]:
    found = []
    for push in pushes:
        data = push.get("pub", {}).get("data", {})
        if push.get("channel") == "room:duo" and data.get("type") == "state" and data.get("user") == user:
            found.append(data)
    return found


async def test_a_person_streaming_in_a_room_survives_the_drain_of_their_pod(
    operator: RunningOperator, namespace: str, tmp_path: Path, redis: RedisServer
) -> None:
    from tests.worker.transport.test_living import ppg_batches

    body = full_example()
    body["metadata"]["name"] = "moves"
    body["spec"]["worker"]["replicas"] = 2
    body["spec"]["ingress"]["host"] = "moves.example.com"
    apply(body, namespace=namespace)
    wait_ready("moves", namespace, timeout=180)
    async with LoopbackKubelet(
        namespace,
        "app.kubernetes.io/component=worker",
        env_overrides={"RESONANCE_REDIS_URL": redis.url, "RESONANCE_LOG_JSON": "false"},
        env_unset=NEO4J,
        workdir=tmp_path / "pods",
    ) as kubelet:
        with LoopbackIngress(namespace, "moves", workdir=tmp_path / "nginx", poll_seconds=0.5) as ingress:
            await kubelet.wait_endpoints_async(2, timeout=120)
            await ingress.wait_upstreams_async(2)
            secret = jwt_secret("moves", namespace)
            batches = ppg_batches(175)
            pia = await Protocol.connect(ingress, secret, "pia")
            assert (await pia.rpc("room.join", {"room": "duo"}))["members"] == ["pia"]
            await pia.call({"subscribe": {"channel": "room:duo"}})
            for batch in batches[:100]:
                await pia.rpc("bio.push", batch)
            for value in (0.7, 0.4, 0.8, 0.3, 0.6):
                await pia.rpc("state.report", {"valence": 0.2, "arousal": value})
            before = await pia.rpc("self.reflect", {})
            assert before["self_understanding"]["pairs"] == 5, before

            # Drain pia's pod: its worker closes her connection; she reconnects through the proxy.
            old = pia.node
            kubectl("delete", "pod", old, "-n", namespace, "--wait=false")
            await pia.closed(timeout=90)
            await pia.close()
            moved = await reconnect_elsewhere(ingress, secret, "pia", old)
            await moved.call({"subscribe": {"channel": "room:duo"}})  # the SDK's resubscribe
            after = await moved.rpc("self.reflect", {})
            assert after["self_understanding"] == before["self_understanding"]
            assert after["home"] == before["home"]
            readings = []
            for batch in batches[100:]:
                readings += (await moved.rpc("bio.push", batch))["readings"]
            arousal = [r for r in readings if r["kind"] == "arousal"]
            assert arousal and all(r["baseline_ready"] for r in arousal), arousal[:2]  # not reset
            await moved.rpc("state.report", {"valence": 0.2, "arousal": 0.5})
            await moved.rpc("state.get", {})  # a round trip: the room's publication has arrived by now
            assert room_states(moved.pushes, "pia"), moved.pushes[-5:]  # still in the room
            await moved.close()
            assert not ingress.errors, ingress.errors


async def reconnect_elsewhere(ingress: LoopbackIngress, secret: str, user: str, old: str) -> Protocol:
    """Reconnect as a client does (with backoff) until a worker other than ``old`` answers."""
    for _ in range(60):
        try:
            client = await Protocol.connect(ingress, secret, user)
        except (aiohttp.ClientError, AssertionError):
            await asyncio.sleep(0.5)
            continue
        if client.node != old:
            return client
        await client.close()
        await asyncio.sleep(0.5)
    raise AssertionError(f"no worker but {old} answered")
