"""Every limit tripped against a real worker: the documented code, a metric,
a log line - and everyone else keeps being served.

Tests named ``raw_websocket`` drive the protocol by hand with an aiohttp
WebSocket, only for what the SDK cannot do (never answer a ping, never send
connect, send garbage, stop reading)."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable

import aiohttp
import centrifuge
import pytest

from tests.harness.redis import RedisServer
from tests.harness.worker import WorkerProcess, api_call
from tests.worker.transport.conftest import Clients, SubRecorder
from tests.worker.transport.test_sdk import metric, subscribed

StartWorker = Callable[..., WorkerProcess]


def limit_logged(worker: WorkerProcess, kind: str) -> bool:
    return any(r.get("msg") == "limit exceeded" and r.get("limit") == kind for r in worker.log_records())


async def wait_connections(worker: WorkerProcess, count: int) -> None:
    for _ in range(100):
        if metric(await asyncio.to_thread(worker.metrics), "resonance_connections") == count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the worker never got down to {count} connections")


async def test_connections_per_ip(start_worker: StartWorker, clients: Clients) -> None:
    worker = start_worker({"RESONANCE_LIMITS__MAX_CONNECTIONS_PER_IP": "2"})
    first, _ = await clients.connected(worker.ws_url, worker.token("a"))
    await clients.connected(worker.ws_url, worker.token("b"))
    third, events = clients.new(worker.ws_url, worker.token("c"))
    await third.connect()
    disconnected = await events.wait_for("disconnected")
    assert (disconnected.code, disconnected.reason) == (3504, "connection limit")
    # The close follows the 101 at once; the SDK's connect command can race it, and then it reads "transport
    # closed" and tries once more before it gets the code. Every refusal is counted once and logged, and no
    # connection over the limit was let in.
    refusals = [
        r
        for r in worker.log_records()
        if r.get("msg") == "limit exceeded" and r.get("limit") == "connections_per_ip"
    ]
    exposition = worker.metrics()
    assert refusals
    assert metric(exposition, "resonance_limit_violations_total", kind="connections_per_ip") == len(refusals)
    assert metric(exposition, "resonance_connections") == 2
    assert (await first.rpc("echo", 1)).data == 1  # the others are still served


async def test_connections_per_ip_behind_an_ingress(start_worker: StartWorker, clients: Clients) -> None:
    worker = start_worker(
        {
            "RESONANCE_LIMITS__MAX_CONNECTIONS_PER_IP": "1",
            "RESONANCE_CLIENT_IP_HEADER": "X-Forwarded-For",
            # The test client is the ingress (127.0.0.1); 10.9.9.9 is a second proxy of ours.
            "RESONANCE_TRUSTED_PROXIES": '["127.0.0.1/32", "10.9.9.9/32"]',
        }
    )
    await clients.connected(
        worker.ws_url, worker.token("a"), headers={"X-Forwarded-For": "10.0.0.1, 10.9.9.9"}
    )
    await clients.connected(worker.ws_url, worker.token("b"), headers={"X-Forwarded-For": "10.0.0.2"})
    third, events = clients.new(worker.ws_url, worker.token("c"), headers={"X-Forwarded-For": "10.0.0.1"})
    await third.connect()
    assert (await events.wait_for("disconnected")).code == 3504
    records = [r for r in worker.log_records() if r.get("limit") == "connections_per_ip"]
    assert records and records[0]["ip"] == "10.0.0.1"


async def test_connections_per_user(start_worker: StartWorker, clients: Clients) -> None:
    worker = start_worker({"RESONANCE_LIMITS__MAX_CONNECTIONS_PER_USER": "1"})
    first, _ = await clients.connected(worker.ws_url, worker.token("same"))
    second, events = clients.new(worker.ws_url, worker.token("same"))
    await second.connect()
    assert (await events.wait_for("disconnected")).code == 3504
    assert limit_logged(worker, "connections_per_user")
    await clients.connected(worker.ws_url, worker.token("other"))
    await first.disconnect()
    await wait_connections(worker, 1)
    third, _ = await clients.connected(worker.ws_url, worker.token("same"))  # the slot is free again
    assert (await third.rpc("whoami", None)).data["user"] == "same"


async def test_connections_in_total_get_http_503_and_the_sdk_retries(
    start_worker: StartWorker, clients: Clients
) -> None:
    worker = start_worker({"RESONANCE_LIMITS__MAX_CONNECTIONS": "1"})
    first, _ = await clients.connected(worker.ws_url, worker.token("a"))
    second, events = clients.new(worker.ws_url, worker.token("b"))
    await second.connect()
    error = await events.wait_for("error")
    assert "503" in str(error.error)
    assert limit_logged(worker, "connections_total")
    await first.disconnect()
    await events.wait_for("connected", timeout=15)


async def test_message_size_limit_closes_1009(start_worker: StartWorker, clients: Clients) -> None:
    worker = start_worker({"RESONANCE_LIMITS__MAX_MESSAGE_BYTES": "2048"})
    bystander, _ = await clients.connected(worker.ws_url, worker.token("ok"))
    client, events = await clients.connected(worker.ws_url, worker.token("big"))
    sub, _ = await subscribed(client, "chat:size")
    await sub.publish({"text": "x" * 1000})  # under the limit
    with pytest.raises(centrifuge.CentrifugeError):
        await sub.publish({"text": "x" * 4000})
    # The SDK maps close code 1009 to its "message size limit" (3) and reconnects.
    connecting = await events.wait_code("connecting", 3)
    assert connecting.reason == "message size limit"
    assert metric(worker.metrics(), "resonance_disconnects_total", code="1009") == 1
    assert limit_logged(worker, "message_size")
    assert (await bystander.rpc("echo", 2)).data == 2


async def test_command_rate_per_connection(start_worker: StartWorker, clients: Clients) -> None:
    worker = start_worker({"RESONANCE_LIMITS__COMMAND_RATE": "2", "RESONANCE_LIMITS__COMMAND_BURST": "3"})
    client, _ = await clients.connected(worker.ws_url, worker.token("fast"))
    results = await asyncio.gather(*(client.rpc("echo", n) for n in range(8)), return_exceptions=True)
    errors = [r for r in results if isinstance(r, centrifuge.ReplyError)]
    assert errors and all(e.code == 111 and e.temporary for e in errors)
    assert sum(1 for r in results if not isinstance(r, Exception)) >= 3
    assert limit_logged(worker, "command_rate")
    await asyncio.sleep(1.0)
    assert (await client.rpc("echo", "later")).data == "later"  # the bucket refills


async def test_sustained_flood_is_disconnected_3013(start_worker: StartWorker, clients: Clients) -> None:
    worker = start_worker(
        {
            "RESONANCE_LIMITS__COMMAND_RATE": "1",
            "RESONANCE_LIMITS__COMMAND_BURST": "1",
            "RESONANCE_LIMITS__MAX_RATE_VIOLATIONS": "3",
        }
    )
    client, events = await clients.connected(worker.ws_url, worker.token("flood"), min_reconnect_delay=5)
    await asyncio.gather(*(client.rpc("echo", n) for n in range(10)), return_exceptions=True)
    connecting = await events.wait_code("connecting", 3013)
    assert connecting.reason == "too many requests"


async def test_user_publish_rate_across_the_cluster(start_worker: StartWorker, clients: Clients) -> None:
    worker = start_worker(
        {"RESONANCE_LIMITS__USER_PUBLISH_RATE": "0.5", "RESONANCE_LIMITS__USER_PUBLISH_BURST": "2"}
    )
    # Two connections of one user share the bucket.
    one, _ = await clients.connected(worker.ws_url, worker.token("chatty"))
    two, _ = await clients.connected(worker.ws_url, worker.token("chatty"))
    sub_one, _ = await subscribed(one, "chat:rate")
    sub_two, _ = await subscribed(two, "chat:rate")
    await sub_one.publish(1)
    await sub_two.publish(2)
    with pytest.raises(centrifuge.ReplyError) as error:
        await sub_one.publish(3)
    assert error.value.code == 111
    assert limit_logged(worker, "user_rate")


async def test_channels_per_connection(start_worker: StartWorker, clients: Clients) -> None:
    worker = start_worker({"RESONANCE_LIMITS__MAX_CHANNELS": "2", "RESONANCE_PERSONAL_CHANNEL": "false"})
    client, _ = await clients.connected(worker.ws_url, worker.token("many"))
    await subscribed(client, "chat:1")
    await subscribed(client, "chat:2")
    events = SubRecorder()
    sub = client.new_subscription("chat:3", events=events)
    await sub.subscribe()
    assert (await events.wait_for("unsubscribed")).code == 106
    assert limit_logged(worker, "channels")


async def test_sdk_answers_pings(start_worker: StartWorker, clients: Clients) -> None:
    worker = start_worker({"RESONANCE_PING_INTERVAL_SECONDS": "1", "RESONANCE_PONG_TIMEOUT_SECONDS": "1"})
    client, events = await clients.connected(worker.ws_url, worker.token("pinged"))
    await asyncio.sleep(3.5)
    assert [name for name, _ in events.seen if name in ("connecting", "disconnected")] == ["connecting"]
    assert (await client.rpc("echo", 1)).data == 1


async def _raw_connect(
    session: aiohttp.ClientSession, worker: WorkerProcess, user: str
) -> aiohttp.ClientWebSocketResponse:
    ws = await session.ws_connect(worker.ws_url)
    await ws.send_str(json.dumps({"id": 1, "connect": {"token": worker.token(user)}}))
    reply = json.loads((await ws.receive(timeout=5)).data)
    assert reply["connect"]["client"]
    return ws


async def test_raw_websocket_that_never_answers_ping_is_closed_3012(start_worker: StartWorker) -> None:
    worker = start_worker({"RESONANCE_PING_INTERVAL_SECONDS": "1", "RESONANCE_PONG_TIMEOUT_SECONDS": "1"})
    async with aiohttp.ClientSession() as http:
        ws = await _raw_connect(http, worker, "silent")
        ping = await ws.receive(timeout=5)
        assert ping.data == "{}"
        closed = await ws.receive(timeout=5)
        assert closed.type is aiohttp.WSMsgType.CLOSE
        assert (closed.data, closed.extra) == (3012, "no pong")


async def test_raw_websocket_that_never_sends_connect_is_closed_3502(start_worker: StartWorker) -> None:
    worker = start_worker({"RESONANCE_CONNECT_TIMEOUT_SECONDS": "1"})
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(worker.ws_url)
        closed = await ws.receive(timeout=5)
        assert (closed.data, closed.extra) == (3502, "stale")


@pytest.mark.parametrize(
    ("frame", "detail"),
    [
        ("not json", "not JSON (invalid literal, expected 'null' at 0)"),
        ('{"id": 1, "subscribe": {"channel": "chat:x"}}', "subscribe before connect"),
        ("[]", "a command must be a JSON object"),
    ],
)
async def test_raw_websocket_malformed_or_premature_frames_are_closed_3501(
    worker: WorkerProcess, frame: str, detail: str
) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(worker.ws_url)
        await ws.send_str(frame)
        closed = await ws.receive(timeout=5)
        assert (closed.data, closed.extra) == (3501, f"bad request: {detail}")


async def test_raw_websocket_binary_frame_is_a_bad_request(worker: WorkerProcess) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await _raw_connect(http, worker, "binary")
        await ws.send_bytes(b"\x00\x01")
        closed = await ws.receive(timeout=5)
        assert closed.data == 3501


async def test_raw_websocket_that_stops_reading_is_closed_as_slow(
    start_worker: StartWorker, clients: Clients
) -> None:
    worker = start_worker(
        {"RESONANCE_LIMITS__QUEUE_MAX_BYTES": "65536", "RESONANCE_LIMITS__MAX_MESSAGE_BYTES": "200000"}
    )
    reader, _ = await clients.connected(worker.ws_url, worker.token("reader"))
    _, reader_events = await subscribed(reader, "typing:firehose")
    async with aiohttp.ClientSession() as http:
        ws = await _raw_connect(http, worker, "stuck")
        await ws.send_str(json.dumps({"id": 2, "subscribe": {"channel": "typing:firehose"}}))
        assert "subscribe" in json.loads((await ws.receive(timeout=5)).data)
        # Stop reading at the socket, as a phone that froze would (aiohttp would otherwise keep
        # reading into its own buffer).
        ws._conn.transport.pause_reading()  # type: ignore[union-attr]
        payload = "x" * 60000
        # The stuck client never reads again; its socket buffers fill, then its queue.
        # Loopback socket buffers autotune to tens of MB: allow up to ~120 MB before giving up.
        for n in range(2000):
            status, _ = await api_call(
                worker, "publish", {"channel": "typing:firehose", "data": [n, payload]}
            )
            assert status == 200
            if n % 20 == 19 and metric(worker.metrics(), "resonance_disconnects_total", code="3008"):
                break
        assert metric(worker.metrics(), "resonance_disconnects_total", code="3008") == 1
        assert limit_logged(worker, "queue")
    # The reader kept up and got everything.
    received = 0
    while received <= n:
        ctx = await reader_events.wait_for("publication")
        assert ctx.pub.data[0] == received
        received += 1


async def test_address_and_user_limits_hold_across_the_workers_of_a_cluster(
    start_worker: StartWorker, clients: Clients, redis_server: RedisServer
) -> None:
    """Two workers on one Redis: an address's and a user's connections count together (issue 15: they
    counted per worker). A forged X-Forwarded-For from an untrusted peer changes nothing."""
    shared = {
        "RESONANCE_ENGINE": "redis",
        "RESONANCE_REDIS_URL": redis_server.url,
        "RESONANCE_REDIS_PREFIX": f"limits-{secrets.token_hex(4)}",
        "RESONANCE_LIMITS__MAX_CONNECTIONS_PER_IP": "3",
        "RESONANCE_LIMITS__MAX_CONNECTIONS_PER_USER": "2",
        # Only 10.9.9.9 may forward; the test client (127.0.0.1) is not a proxy of ours.
        "RESONANCE_CLIENT_IP_HEADER": "X-Forwarded-For",
        "RESONANCE_TRUSTED_PROXIES": '["10.9.9.9/32"]',
    }
    one, two = start_worker(shared, name="one"), start_worker(shared, name="two")
    await clients.connected(one.ws_url, one.token("a"), headers={"X-Forwarded-For": "10.0.0.1"})
    await clients.connected(two.ws_url, two.token("b"), headers={"X-Forwarded-For": "10.0.0.2"})
    await clients.connected(one.ws_url, one.token("c"))
    fourth, events = clients.new(two.ws_url, two.token("d"), headers={"X-Forwarded-For": "10.0.0.3"})
    await fourth.connect()
    assert (await events.wait_for("disconnected")).code == 3504  # the fourth from 127.0.0.1, forged or not
    assert metric(two.metrics(), "resonance_limit_violations_total", kind="connections_per_ip") == 1
    assert metric(one.metrics(), "resonance_limit_violations_total", kind="connections_per_ip") == 0
    await clients.close()
    clients.clients.clear()
    await wait_connections(one, 0)
    await wait_connections(two, 0)
    # The address's slots are free again; now the user: two on one worker, the third on the other.
    await clients.connected(one.ws_url, one.token("same"))
    await clients.connected(one.ws_url, one.token("same"))
    third, events = clients.new(two.ws_url, two.token("same"))
    await third.connect()
    assert (await events.wait_for("disconnected")).code == 3504
    assert limit_logged(two, "connections_per_user")
