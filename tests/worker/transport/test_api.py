"""The server API, observability, other key types and the RPC extension point,
against real workers and real SDK clients."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import centrifuge
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from resonance_worker.domain.auth import TokenVerifier
from resonance_worker.domain.channels import NamespaceOptions
from resonance_worker.domain.codes import Disconnects, ErrorCode
from resonance_worker.domain.operations import Connected
from resonance_worker.domain.session import Session
from resonance_worker.engines.memory import MemoryEngine
from resonance_worker.metrics import WorkerMetrics
from resonance_worker.rpc import RpcCall, RpcError
from resonance_worker.settings import WorkerSettings
from resonance_worker.tokens import mint_connection_token
from resonance_worker.transport import api
from resonance_worker.transport.app import create_app
from resonance_worker.transport.node import Node

from tests.harness.processes import free_port
from tests.harness.worker import API_KEY, JWT_SECRET, WorkerProcess, api_call
from tests.worker.transport.conftest import Clients
from tests.worker.transport.test_sdk import metric, subscribed

StartWorker = Callable[..., WorkerProcess]


async def test_publish_with_idempotency_key_and_history(worker: WorkerProcess, clients: Clients) -> None:
    client, _ = await clients.connected(worker.ws_url, worker.token("api-user"))
    _, events = await subscribed(client, "chat:api")
    body = {"channel": "chat:api", "data": {"n": 1}, "idempotency_key": "order-1", "tags": {"kind": "order"}}
    status, first = await api_call(worker, "publish", body)
    assert status == 200 and first["result"]["offset"] == 1
    status, again = await api_call(worker, "publish", body)
    assert status == 200 and again["result"] == {**first["result"], "duplicate": True}
    ctx = await events.wait_for("publication")
    assert ctx.pub.data == {"n": 1} and ctx.pub.tags == {"kind": "order"}
    status, history = await api_call(worker, "history", {"channel": "chat:api", "limit": 10})
    assert status == 200
    assert [p["data"] for p in history["result"]["publications"]] == [{"n": 1}]
    status, since = await api_call(
        worker,
        "history",
        {"channel": "chat:api", "limit": -1, "since": {"offset": 1, "epoch": history["result"]["epoch"]}},
    )
    assert status == 200 and since["result"]["publications"] == []
    await asyncio.sleep(0.2)
    assert len([n for n, _ in events.seen if n == "publication"]) == 1


async def test_broadcast_presence_and_disconnect(worker: WorkerProcess, clients: Clients) -> None:
    client, client_events = await clients.connected(worker.ws_url, worker.token("bc"), min_reconnect_delay=5)
    _, one = await subscribed(client, "chat:b1")
    _, two = await subscribed(client, "typing:b2")
    status, body = await api_call(worker, "broadcast", {"channels": ["chat:b1", "typing:b2"], "data": "all"})
    assert status == 200 and len(body["result"]["responses"]) == 2
    assert (await one.wait_for("publication")).pub.data == "all"
    assert (await two.wait_for("publication")).pub.data == "all"
    status, body = await api_call(worker, "presence", {"channel": "chat:b1"})
    assert status == 200
    assert [c["user"] for c in body["result"]["presence"].values()] == ["bc"]
    status, body = await api_call(worker, "presence_stats", {"channel": "chat:b1"})
    assert body["result"] == {"num_clients": 1, "num_users": 1}
    status, _ = await api_call(worker, "unsubscribe", {"user": "bc", "channel": "chat:b1"})
    assert status == 200
    assert (await one.wait_for("unsubscribed")).code == 2000
    status, _ = await api_call(worker, "disconnect", {"user": "bc", "code": 4501, "reason": "banned"})
    assert status == 200
    disconnected = await client_events.wait_for("disconnected")
    assert (disconnected.code, disconnected.reason) == (4501, "banned")


@pytest.mark.parametrize(
    ("method", "body", "status", "code"),
    [
        ("publish", {"channel": "nope:x", "data": 1}, 400, 102),
        ("publish", {"channel": "chat:x"}, 400, 107),
        ("publish", {"channel": 5, "data": 1}, 400, 107),
        ("publish", {"channel": "chat:x", "data": 1, "idempotency_key": 5}, 400, 107),
        ("publish", {"channel": "chat:x", "data": 1, "tags": {"a": 1}}, 400, 107),
        ("broadcast", {"channels": []}, 400, 107),
        ("presence", {"channel": "typing:x"}, 400, 108),
        ("presence_stats", {"channel": "typing:x"}, 400, 108),
        ("history", {"channel": "typing:x"}, 400, 108),
        ("history", {"channel": "chat:x", "limit": "3"}, 400, 107),
        ("history", {"channel": "chat:x", "since": 3}, 400, 107),
        ("disconnect", {"user": ""}, 400, 107),
        ("disconnect", {"user": "u", "code": 1000}, 400, 107),
        ("nope", {}, 404, 104),
    ],
)
async def test_server_api_bad_input_is_a_4xx_with_a_message(
    worker: WorkerProcess, method: str, body: dict[str, Any], status: int, code: int
) -> None:
    got_status, got = await api_call(worker, method, body)
    assert got_status == status
    assert got["error"]["code"] == code and got["error"]["message"]


async def test_server_api_needs_the_key(worker: WorkerProcess, start_worker: StartWorker) -> None:
    body = {"channel": "chat:x", "data": 1}
    assert worker.api("publish", body, key=None)[0] == 401
    assert worker.api("publish", body, key="wrong")[0] == 401
    status, _ = worker.http("POST", "/api/publish", body, {"X-API-Key": API_KEY})
    assert status == 200
    assert worker.http("POST", "/api/publish", "not an object", {"X-API-Key": API_KEY})[0] == 400
    disabled = start_worker({"RESONANCE_API_KEY": ""})
    status, got = disabled.api("publish", body)
    assert status == 403 and "disabled" in got["error"]["message"]


async def test_metrics_and_json_logs(worker: WorkerProcess, clients: Clients) -> None:
    client, _ = await clients.connected(worker.ws_url, worker.token("observed"))
    sub, events = await subscribed(client, "chat:observed")
    await sub.publish("x")
    await events.wait_for("publication")
    with pytest.raises(centrifuge.ReplyError):
        await client.rpc("missing", None)
    text = await asyncio.to_thread(worker.metrics)
    assert metric(text, "resonance_commands_total", method="connect") >= 1
    assert metric(text, "resonance_commands_total", method="subscribe") >= 1
    assert metric(text, "resonance_command_errors_total", method="rpc", code="104") >= 1
    assert metric(text, "resonance_delivery_latency_seconds_count") >= 1
    assert metric(text, "resonance_publications_delivered_total") >= 1
    assert metric(text, "resonance_connections") >= 1
    connected = [
        r for r in worker.log_records() if r.get("msg") == "client connected" and r.get("user") == "observed"
    ]
    assert connected and connected[0]["client"] == client.client_id
    # No token in any log record (the start-up banner's demo token is printed, not logged).
    assert all("eyJ" not in json.dumps(record) for record in worker.log_records())


def _pem(key: Any) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


async def test_rs256_and_es256_public_keys(start_worker: StartWorker, clients: Clients) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    worker = start_worker(
        {"RESONANCE_JWT_RSA_PUBLIC_KEY": _pem(rsa_key), "RESONANCE_JWT_EC_PUBLIC_KEY": _pem(ec_key)}
    )
    for key, alg in ((rsa_key, "RS256"), (ec_key, "ES256")):
        token = jwt.encode({"sub": alg, "exp": int(time.time()) + 60}, key, alg)
        client, _ = await clients.connected(worker.ws_url, token)
        assert (await client.rpc("whoami", None)).data["user"] == alg


@pytest.fixture
async def jwks_server() -> AsyncIterator[tuple[str, rsa.RSAPrivateKey]]:
    """A JWKS endpoint on loopback, as an identity provider would serve."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = key.public_key().public_numbers()

    def b64(n: int) -> str:
        return base64.urlsafe_b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()

    document = {
        "keys": [{"kty": "RSA", "kid": "idp-1", "alg": "RS256", "n": b64(numbers.n), "e": b64(numbers.e)}]
    }

    async def serve(request: web.Request) -> web.Response:
        return web.json_response(document)

    app = web.Application()
    app.router.add_get("/jwks.json", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    yield f"http://127.0.0.1:{port}/jwks.json", key
    await runner.cleanup()


async def test_jwks_url(
    jwks_server: tuple[str, rsa.RSAPrivateKey], start_worker: StartWorker, clients: Clients
) -> None:
    url, key = jwks_server
    worker = await asyncio.to_thread(start_worker, {"RESONANCE_JWT_JWKS_URL": url})
    for _ in range(50):
        if any(r.get("msg") == "JWKS loaded" for r in worker.log_records()):
            break
        await asyncio.sleep(0.1)
    token = jwt.encode({"sub": "sso", "exp": int(time.time()) + 60}, key, "RS256", headers={"kid": "idp-1"})
    client, _ = await clients.connected(worker.ws_url, token)
    assert (await client.rpc("whoami", None)).data["user"] == "sso"


async def test_rpc_methods_plug_in_through_create_app(clients: Clients) -> None:
    """The extension point used by the rest of the product, served in this process."""
    received: list[RpcCall] = []

    async def estimate(call: RpcCall) -> Any:
        received.append(call)
        if call.data == "bad":
            raise RpcError(ErrorCode.BAD_REQUEST, "bad sample")
        if call.data == "crash":
            raise RuntimeError("bug")
        return {"estimate": call.data * 2}

    messages: list[RpcCall] = []

    async def on_message(call: RpcCall) -> None:
        messages.append(call)

    settings = WorkerSettings(_env_file=None, jwt_secret=JWT_SECRET, port=0)  # type: ignore[call-arg]
    app = create_app(settings, rpc_methods={"thyroid.estimate": estimate}, message_handler=on_message)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        from resonance_worker.tokens import mint_connection_token

        token = mint_connection_token(JWT_SECRET, sub="patient", now=time.time())
        client, _ = await clients.connected(f"ws://127.0.0.1:{port}/connection/websocket", token)
        assert (await client.rpc("thyroid.estimate", 21)).data == {"estimate": 42}
        assert received[0].user == "patient" and received[0].client == client.client_id
        with pytest.raises(centrifuge.ReplyError) as error:
            await client.rpc("thyroid.estimate", "bad")
        assert (error.value.code, error.value.message) == (107, "bad sample")
        with pytest.raises(centrifuge.ReplyError) as error:
            await client.rpc("thyroid.estimate", "crash")
        assert error.value.code == 100 and error.value.temporary
        await client._send_commands([{"send": {"data": {"hello": "server"}}}])  # no public send() in the SDK
        for _ in range(50):
            if messages:
                break
            await asyncio.sleep(0.02)
        assert messages[0].data == {"hello": "server"}
        await client.disconnect()
    finally:
        await runner.cleanup()


async def test_send_without_a_message_handler_is_not_available(worker: WorkerProcess) -> None:
    """Raw WebSocket: the SDK exposes no way to send an asynchronous message."""
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(worker.ws_url)
        await ws.send_json({"id": 1, "connect": {"token": worker.token("sender")}})
        await ws.receive(timeout=5)
        await ws.send_str('{"send": {"data": 1}}')
        closed = await ws.receive(timeout=5)
        assert (closed.data, closed.extra) == (3508, "not available")


# -- one rule book: every request rule is the same for a client command and the server API ----------

OPEN = NamespaceOptions(
    presence=True,
    history_size=10,
    history_ttl_seconds=60,
    allow_subscribe_for_client=True,
    allow_publish_for_client=True,
    allow_presence_for_client=True,
    allow_history_for_client=True,
)
QUIET = NamespaceOptions(allow_subscribe_for_client=True, allow_publish_for_client=True)
FATAL = "fatal"  # malformed: a client connection is closed with 3501, the server API answers 107

RULE_CASES: list[tuple[str, dict[str, Any], int | str | None]] = [
    ("history", {"channel": "open:a"}, None),
    ("history", {"channel": "open:a", "limit": 5, "reverse": True}, None),
    ("history", {"channel": "open:a", "limit": -1}, None),
    ("history", {"channel": "open:a", "limit": True}, 107),
    ("history", {"channel": "open:a", "limit": "5"}, 107),
    ("history", {"channel": "open:a", "limit": 2.5}, 107),
    ("history", {"channel": "open:a", "reverse": "yes"}, 107),
    ("history", {"channel": "open:a", "since": None}, None),
    ("history", {"channel": "open:a", "since": {"offset": 3, "epoch": "e"}}, None),
    ("history", {"channel": "open:a", "since": {"offset": 2**64 - 1}}, None),
    ("history", {"channel": "open:a", "since": {"offset": True, "epoch": "e"}}, 107),
    ("history", {"channel": "open:a", "since": {"offset": "3", "epoch": "e"}}, 107),
    ("history", {"channel": "open:a", "since": {"offset": -1, "epoch": "e"}}, 107),
    ("history", {"channel": "open:a", "since": {"offset": 3, "epoch": 5}}, 107),
    ("history", {"channel": "open:a", "since": 3}, 107),
    ("history", {"channel": "quiet:a"}, 108),
    ("history", {"channel": "nope:a"}, 102),
    ("history", {"channel": "open:" + "a" * 300}, 107),
    ("history", {"channel": ""}, FATAL),
    ("history", {"channel": 5}, FATAL),
    ("presence", {"channel": "open:a"}, None),
    ("presence", {"channel": "quiet:a"}, 108),
    ("presence", {"channel": "nope:a"}, 102),
    ("presence", {}, FATAL),
    ("presence_stats", {"channel": "open:a"}, None),
    ("presence_stats", {"channel": "quiet:a"}, 108),
    ("publish", {"channel": "open:a", "data": {"n": 1}}, None),
    ("publish", {"channel": "open:a", "data": False}, None),
    ("publish", {"channel": "open:a", "data": None}, 107),
    ("publish", {"channel": "open:a"}, 107),
    ("publish", {"channel": "nope:a", "data": 1}, 102),
    ("publish", {"data": 1}, FATAL),
]


def _rules_node() -> Node:
    settings = WorkerSettings(  # type: ignore[call-arg]
        _env_file=None, jwt_secret=JWT_SECRET, namespaces={"open": OPEN, "quiet": QUIET}
    )
    return Node(
        settings,
        MemoryEngine(sweep_interval=0),
        WorkerMetrics(),
        TokenVerifier(hmac_secret=JWT_SECRET),
        rpc_methods={},
    )


def _over_a_connection(node: Node, method: str, params: dict[str, Any]) -> int | str | None:
    session = Session(
        "c1", config=node.session_config, rules=node.rules, verifier=node.verifier, now=time.time()
    )
    token = mint_connection_token(JWT_SECRET, sub="rules", now=time.time())
    session.receive_data(json.dumps({"id": 1, "connect": {"token": token}}), time.time())
    (connect,) = session.effects()
    session.complete(connect, Connected({}), time.time())
    session.data_to_send()
    session.receive_data(json.dumps({"id": 2, method: params}), time.time())
    if session.closed:
        assert session.close_reason == Disconnects.BAD_REQUEST
        return FATAL
    replies = [json.loads(frame) for frame in session.data_to_send()]
    if replies:
        return int(replies[0]["error"]["code"])
    assert session.effects(), "an accepted command asks for its operation"
    return None


async def _over_the_server_api(node: Node, method: str, body: dict[str, Any]) -> int | str | None:
    try:
        await api._call(node, method, body)
    except api.ApiError as exc:
        return int(exc.code)
    return None


@pytest.mark.parametrize(("method", "params", "outcome"), RULE_CASES)
async def test_each_request_rule_is_the_same_on_both_paths(
    method: str, params: dict[str, Any], outcome: int | str | None
) -> None:
    node = _rules_node()
    assert _over_a_connection(node, method, params) == outcome
    api_outcome = await _over_the_server_api(node, method, params)
    assert api_outcome == (int(ErrorCode.BAD_REQUEST) if outcome == FATAL else outcome)


async def test_a_broadcast_with_one_bad_channel_publishes_nothing() -> None:
    node = _rules_node()
    body = {"channels": ["open:a", "nope:b"], "data": 1}
    assert await _over_the_server_api(node, "broadcast", body) == 102
    assert await _over_the_server_api(node, "history", {"channel": "open:a", "limit": -1}) is None
    result = await api._call(node, "history", {"channel": "open:a", "limit": -1})
    assert result["publications"] == [] and result["offset"] == 0
    body = {"channels": ["open:a", "open:b"], "data": 1, "idempotency_key": ""}
    first = await api._call(node, "broadcast", body)
    again = await api._call(node, "broadcast", body)
    assert [r.get("duplicate") for r in again["responses"]] == [True, True]
    assert [r["offset"] for r in first["responses"]] == [1, 1]


async def test_info_channels_and_connections_describe_the_worker_that_answers(
    start_worker: StartWorker, clients: Clients
) -> None:
    """The admin view's methods: a fresh worker, two people, three subscriptions."""
    worker = start_worker({"RESONANCE_NODE_NAME": "admin-node"}, name="admin-node")
    ana, _ = await clients.connected(worker.ws_url, worker.token("ana"))
    ben, _ = await clients.connected(worker.ws_url, worker.token("ben"))
    for client, channel in ((ana, "chat:a1"), (ana, "chat:b1"), (ben, "chat:a1")):
        await subscribed(client, channel)

    status, body = await api_call(worker, "connections", {})
    assert status == 200
    connections = body["result"]["connections"]
    assert body["result"]["total"] == 2 and body["result"]["node"] == "admin-node"
    assert {c["user"] for c in connections.values()} == {"ana", "ben"}
    assert connections[ana.client_id]["node"] == "admin-node"
    assert {"chat:a1", "chat:b1"} <= set(connections[ana.client_id]["channels"])
    status, body = await api_call(worker, "connections", {"user": "ben"})
    assert list(body["result"]["connections"]) == [ben.client_id]

    status, body = await api_call(worker, "channels", {})
    channels = body["result"]["channels"]
    assert channels["chat:a1"] == {"num_clients": 2} and channels["chat:b1"] == {"num_clients": 1}
    status, body = await api_call(worker, "channels", {"pattern": "chat:a*"})
    assert body["result"]["channels"] == {"chat:a1": {"num_clients": 2}} and body["result"]["total"] == 1

    status, body = await api_call(worker, "info", {})
    assert status == 200
    [node] = body["result"]["nodes"]
    assert node["name"] == "admin-node" and node["version"] and node["uptime"] >= 0
    assert (node["num_clients"], node["num_users"]) == (2, 2)
    assert node["num_channels"] == len(channels)
    assert node["num_subs"] == sum(len(c["channels"]) for c in connections.values())

    await ben.disconnect()
    for _ in range(100):
        status, body = await api_call(worker, "connections", {"user": "ben"})
        if body["result"]["total"] == 0:
            break
        await asyncio.sleep(0.05)
    assert body["result"] == {"connections": {}, "total": 0, "node": "admin-node"}
    status, body = await api_call(worker, "channels", {})
    assert body["result"]["channels"]["chat:a1"] == {"num_clients": 1}


@pytest.mark.parametrize(
    ("method", "body", "field"),
    [("channels", {"pattern": ""}, "pattern"), ("connections", {"user": 7}, "user")],
)
async def test_the_admin_methods_refuse_bad_bodies_and_missing_keys(
    worker: WorkerProcess, method: str, body: dict[str, Any], field: str
) -> None:
    status, answer = await api_call(worker, method, body)
    assert status == 400 and answer["error"]["code"] == ErrorCode.BAD_REQUEST
    assert field in answer["error"]["message"]
    status, _ = await asyncio.to_thread(worker.api, method, {}, None)
    assert status == 401
