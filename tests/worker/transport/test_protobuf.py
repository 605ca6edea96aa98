"""A real worker speaking protobuf: the official centrifuge-python SDK in its protobuf mode beside its JSON
mode in one channel, the server's ping answered, raw sockets sending broken frames (each closes only its
own connection, with 3501, what was wrong, a metric and a log line), non-JSON bytes closing the JSON
readers with 3506 as Centrifugo does, and the handshake: subprotocol negotiation and browser origins."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import aiohttp
import centrifuge
import pytest
from resonance_worker.domain import client_pb2 as pb
from resonance_worker.domain.protobuf import delimited

from tests.harness.worker import WorkerProcess
from tests.worker.transport.conftest import Clients
from tests.worker.transport.test_sdk import StartWorker, metric, subscribed

PROTOBUF = ("centrifuge-protobuf",)


@pytest.fixture(scope="module")
def pb_worker(tmp_path_factory: pytest.TempPathFactory) -> Any:
    process = WorkerProcess(
        tmp_path_factory.mktemp("pb-worker"),
        {
            "RESONANCE_DEV_MODE": "true",
            "RESONANCE_LIMITS__USER_PUBLISH_RATE": "0",
            "RESONANCE_PING_INTERVAL_SECONDS": "1",
            "RESONANCE_ALLOWED_ORIGINS": '["https://app.example.com", "https://*.example.org"]',
        },
    ).start()
    yield process
    process.stop()


async def test_protobuf_and_json_sdk_clients_share_a_channel_both_ways(
    pb_worker: WorkerProcess, clients: Clients
) -> None:
    pb_client, pb_events = await clients.connected(
        pb_worker.ws_url, pb_worker.token("paul"), use_protobuf=True
    )
    json_client, _ = await clients.connected(pb_worker.ws_url, pb_worker.token("jane"))
    _, pb_sub = await subscribed(pb_client, "chat:mixed")
    json_channel, json_sub = await subscribed(json_client, "chat:mixed")
    pb_channel = pb_client.get_subscription("chat:mixed")
    assert pb_channel is not None
    await pb_channel.publish(b'{"from":"protobuf"}')  # the protobuf SDK sends and receives bytes
    await json_channel.publish({"from": "json"})
    got = [(await json_sub.wait_for("publication")).pub.data for _ in range(2)]
    assert got == [{"from": "protobuf"}, {"from": "json"}]
    got = [(await pb_sub.wait_for("publication")).pub.data for _ in range(2)]
    assert got == [b'{"from":"protobuf"}', b'{"from":"json"}']
    history = await pb_channel.history(limit=10)
    assert [p.data for p in history.publications] == [b'{"from":"protobuf"}', b'{"from":"json"}']
    presence = await pb_channel.presence()
    assert {info.user for info in presence.clients.values()} == {"paul", "jane"}
    await asyncio.sleep(2.5)  # pings every second: the protobuf SDK's pongs keep it connected
    assert "disconnected" not in pb_events.names()
    assert json.loads((await pb_client.rpc("whoami", b"{}")).data)["user"] == "paul"


async def raw(
    worker: WorkerProcess, http: aiohttp.ClientSession, **kwargs: Any
) -> aiohttp.ClientWebSocketResponse:
    return await http.ws_connect(worker.ws_url, **kwargs)


async def connect_pb(
    worker: WorkerProcess, http: aiohttp.ClientSession, user: str
) -> aiohttp.ClientWebSocketResponse:
    ws = await raw(worker, http, protocols=PROTOBUF)
    assert ws.protocol == "centrifuge-protobuf"
    await ws.send_bytes(delimited(pb.Command(id=1, connect=pb.ConnectRequest(token=worker.token(user)))))
    reply = await ws.receive(timeout=5)
    assert reply.type is aiohttp.WSMsgType.BINARY
    return ws


@pytest.mark.parametrize(
    ("frame", "detail"),
    [
        (b"\x85", "truncated length prefix"),
        (b"\x09\x08\x02", "a command of 9 bytes runs past the end of the frame (2 left)"),
        (b"\x03\x08\x02\x22", "a command protobuf cannot parse"),
        (b"\x02\x0a\x00", "Command.id has the wrong wire type (2)"),
        (b"\x02\x08\x02" * 10_000, "more than 1000 commands in one frame"),
        ('{"id": 2, "ping": {}}', "a text frame on a protobuf connection"),
    ],
    ids=["truncated-varint", "past-the-frame", "corrupt", "wrong-wire-type", "10000-commands", "text-frame"],
)
async def test_a_broken_frame_closes_only_its_connection(
    pb_worker: WorkerProcess, frame: bytes | str, detail: str
) -> None:
    before = metric(
        pb_worker.metrics(), "resonance_protocol_errors_total", encoding="protobuf", kind="bad_frame"
    )
    async with aiohttp.ClientSession() as http:
        bystander = await connect_pb(pb_worker, http, "bystander")
        ws = await connect_pb(pb_worker, http, "mallory")
        if isinstance(frame, str):
            await ws.send_str(frame)
        else:
            await ws.send_bytes(frame)
        closed = await ws.receive(timeout=5)
        assert (closed.type, closed.data, closed.extra) == (
            aiohttp.WSMsgType.CLOSE,
            3501,
            f"bad request: {detail}",
        )
        await bystander.send_bytes(delimited(pb.Command(id=2, ping=pb.PingRequest())))
        while (reply := await bystander.receive(timeout=5)).data == b"\x00":
            pass  # a server ping
        assert reply.type is aiohttp.WSMsgType.BINARY and pb.Reply.FromString(reply.data[1:]).id == 2
    after = metric(
        pb_worker.metrics(), "resonance_protocol_errors_total", encoding="protobuf", kind="bad_frame"
    )
    assert after == before + 1
    assert any(r.get("msg") == "protocol error" and r.get("error") == detail for r in pb_worker.log_records())


async def test_a_binary_frame_on_a_json_connection_closes_it(pb_worker: WorkerProcess) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await raw(pb_worker, http)
        await ws.send_bytes(b'{"id": 1, "connect": {}}')
        closed = await ws.receive(timeout=5)
        assert closed.data == 3501
        assert (
            closed.extra
            == "bad request: a binary frame on a JSON connection (the protobuf subprotocol was not asked for)"
        )


async def test_non_json_bytes_close_the_json_readers_with_3506(
    pb_worker: WorkerProcess, clients: Clients
) -> None:
    """As Centrifugo 6.9.1 (docs/protocol.md): accepted and stored; protobuf readers get the bytes; each
    JSON reader is closed with 3506 (terminal: the SDK does not reconnect), and so is a JSON client that
    later reads them from history."""
    json_client, json_events = await clients.connected(pb_worker.ws_url, pb_worker.token("jane"))
    await subscribed(json_client, "chat:binary")
    reader, _ = await clients.connected(pb_worker.ws_url, pb_worker.token("pia"), use_protobuf=True)
    _, pb_sub = await subscribed(reader, "chat:binary")
    async with aiohttp.ClientSession() as http:
        ws = await connect_pb(pb_worker, http, "paul")
        subscribe = pb.Command(id=2, subscribe=pb.SubscribeRequest(channel="chat:binary"))
        publish = pb.Command(id=3, publish=pb.PublishRequest(channel="chat:binary", data=b"\x00\xffraw"))
        await ws.send_bytes(delimited(subscribe) + delimited(publish))
        gone = await json_events.wait_for("disconnected")
        assert (gone.code, gone.reason) == (3506, "inappropriate protocol")
        got = await pb_sub.wait_for("publication")
        assert got.pub.data == b"\x00\xffraw"
    late, late_events = await clients.connected(pb_worker.ws_url, pb_worker.token("lena"))
    late_sub, _ = await subscribed(late, "chat:binary")
    with contextlib.suppress(centrifuge.CentrifugeError):
        await late_sub.history(limit=10)  # the history holds the bytes: the connection closes instead
    gone = await late_events.wait_for("disconnected")
    assert gone.code == 3506
    records = pb_worker.log_records()
    assert any("3506" in r.get("msg", "") and r.get("channel") == "chat:binary" for r in records)
    assert any(r.get("kind") == "unencodable" and r.get("level") == "error" for r in records)


async def test_handshakes_choose_the_encoding_or_say_what_is_spoken(pb_worker: WorkerProcess) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(pb_worker.ws_url + "?format=protobuf")
        assert ws.protocol is None
        await ws.send_bytes(b"\x00")  # an unsolicited pong before connect: a protobuf frame, read as one
        assert (await ws.receive(timeout=5)).extra == "bad request: a pong without a ping"
        async with http.get(pb_worker.ws_url, headers=_upgrade(protocol="mqtt, wamp")) as response:
            assert response.status == 400
            assert (await response.json())["error"] == (
                "no subprotocol offered ('mqtt', 'wamp') is spoken here; "
                "this worker speaks centrifuge-json, centrifuge-protobuf"
            )


def _upgrade(origin: str | None = None, protocol: str | None = None) -> dict[str, str]:
    headers = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    if origin is not None:
        headers["Origin"] = origin
    if protocol is not None:
        headers["Sec-WebSocket-Protocol"] = protocol
    return headers


@pytest.mark.parametrize(
    ("origin", "status"),
    [
        (None, 101),  # native apps send no Origin
        ("http://127.0.0.1:{port}", 101),  # the worker's own pages (the console)
        ("https://app.example.com", 101),
        ("https://app.example.com:443", 101),
        ("https://eu.example.org", 101),
        ("https://example.org", 403),
        ("https://evil.example.net", 403),
        ("http://app.example.com", 403),
        ("null", 403),
    ],
)
async def test_browser_origins(pb_worker: WorkerProcess, origin: str | None, status: int) -> None:
    headers = _upgrade(None if origin is None else origin.format(port=pb_worker.port))
    async with aiohttp.ClientSession() as http, http.get(pb_worker.ws_url, headers=headers) as response:
        assert response.status == status
        if status == 403:
            assert "is not allowed (allowed_origins)" in (await response.json())["error"]


@pytest.mark.parametrize("path", ["/health", "/thyroid/status", "/token"])
async def test_cors_for_the_endpoints_a_browser_app_reads(pb_worker: WorkerProcess, path: str) -> None:
    preflight = {
        "Origin": "https://app.example.com",
        "Access-Control-Request-Method": "POST" if path == "/token" else "GET",
    }
    async with aiohttp.ClientSession() as http:
        async with http.options(pb_worker.base_url + path, headers=preflight) as response:
            assert response.status == 204
            assert response.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
            assert "Content-Type" in response.headers["Access-Control-Allow-Headers"]
        async with http.options(
            pb_worker.base_url + path, headers={**preflight, "Origin": "https://evil.example.net"}
        ) as response:
            assert response.status == 403
        if path != "/token":
            async with http.get(
                pb_worker.base_url + path, headers={"Origin": "https://app.example.com"}
            ) as response:
                assert response.headers.get("Access-Control-Allow-Origin") == "https://app.example.com"
            async with http.get(
                pb_worker.base_url + path, headers={"Origin": "https://evil.example.net"}
            ) as response:
                assert "Access-Control-Allow-Origin" not in response.headers


async def test_by_default_only_the_workers_own_origin(start_worker: StartWorker) -> None:
    worker = start_worker()
    async with aiohttp.ClientSession() as http:
        for origin, status in (
            (f"http://127.0.0.1:{worker.port}", 101),
            ("http://localhost:3000", 403),
            (None, 101),
        ):
            async with http.get(worker.ws_url, headers=_upgrade(origin)) as response:
                assert response.status == status, origin
