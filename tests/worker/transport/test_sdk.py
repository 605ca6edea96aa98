"""Real worker processes driven by the real centrifuge-python SDK: what an app
developer sees from a quickstart."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Any

import centrifuge
import jwt
import pytest

from tests.harness.worker import JWT_SECRET, WorkerProcess, api_call
from tests.worker.transport.conftest import Clients, SubRecorder

StartWorker = Callable[..., WorkerProcess]


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (0 when absent)."""
    label_text = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.escape(name) + (r"\{" + re.escape(label_text) + r"\}" if labels else "") + r" ([0-9.e+-]+)"
    match = re.search(pattern, text)
    return float(match.group(1)) if match else 0.0


async def subscribed(client: centrifuge.Client, channel: str, **kwargs: Any) -> tuple[Any, SubRecorder]:
    events = SubRecorder()
    sub = client.new_subscription(channel, events=events, **kwargs)
    await sub.subscribe()
    await sub.ready(timeout=10)
    return sub, events


async def test_quickstart_connect_subscribe_publish_receive(worker: WorkerProcess, clients: Clients) -> None:
    alice, _ = await clients.connected(worker.ws_url, worker.token("alice", info={"name": "Alice"}))
    bob, _ = await clients.connected(worker.ws_url, worker.token("bob"))
    _, alice_events = await subscribed(alice, "chat:quickstart")
    bob_sub, _ = await subscribed(bob, "chat:quickstart")
    await bob_sub.publish({"text": "hello"})
    ctx = await alice_events.wait_for("publication")
    assert ctx.pub.data == {"text": "hello"}
    assert ctx.pub.info.user == "bob"
    assert ctx.pub.offset == 1


async def test_presence_join_leave_and_history(worker: WorkerProcess, clients: Clients) -> None:
    alice, _ = await clients.connected(worker.ws_url, worker.token("alice", info={"name": "Alice"}))
    bob, _ = await clients.connected(worker.ws_url, worker.token("bob"))
    alice_sub, alice_events = await subscribed(alice, "chat:presence", join_leave=True)
    bob_sub, _ = await subscribed(bob, "chat:presence")
    # Every subscriber, the new one included, sees each join (as in Centrifuge).
    assert (await alice_events.wait_for("join")).info.user == "alice"
    assert (await alice_events.wait_for("join")).info.user == "bob"
    presence = await alice_sub.presence()
    assert {info.user for info in presence.clients.values()} == {"alice", "bob"}
    assert [i.conn_info for i in presence.clients.values() if i.user == "alice"] == [{"name": "Alice"}]
    stats = await alice_sub.presence_stats()
    assert (stats.num_clients, stats.num_users) == (2, 2)
    for n in range(3):
        await bob_sub.publish({"n": n})
    history = await alice_sub.history(limit=10)
    assert [p.data for p in history.publications] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert history.offset == 3 and history.epoch
    newest = await alice_sub.history(limit=1, reverse=True)
    assert [p.data for p in newest.publications] == [{"n": 2}]
    await bob_sub.unsubscribe()
    leave = await alice_events.wait_for("leave")
    assert leave.info.user == "bob"
    stats = await alice_sub.presence_stats()
    assert stats.num_clients == 1


async def test_typing_namespace_has_no_history(worker: WorkerProcess, clients: Clients) -> None:
    alice, _ = await clients.connected(worker.ws_url, worker.token("alice"))
    sub, events = await subscribed(alice, "typing:room1")
    await sub.publish({"typing": True})
    ctx = await events.wait_for("publication")
    assert ctx.pub.data == {"typing": True} and ctx.pub.offset == 0
    with pytest.raises(centrifuge.ReplyError) as error:
        await sub.history(limit=5)
    assert error.value.code == 108


async def test_recovery_after_forced_disconnect(worker: WorkerProcess, clients: Clients) -> None:
    alice, alice_client_events = await clients.connected(
        worker.ws_url, worker.token("carol"), min_reconnect_delay=1.5, max_reconnect_delay=2.0
    )
    _, events = await subscribed(alice, "chat:recover")
    first = await events.wait_for("subscribed")
    assert first.recoverable and not first.was_recovering
    status, _ = await api_call(worker, "publish", {"channel": "chat:recover", "data": {"m": 1}})
    assert status == 200
    assert (await events.wait_for("publication")).pub.data == {"m": 1}
    status, _ = await api_call(worker, "disconnect", {"user": "carol", "code": 3011, "reason": "test"})
    assert status == 200
    connecting = await alice_client_events.wait_code("connecting", 3011)
    assert connecting.reason == "test"
    for m in (2, 3):
        await api_call(worker, "publish", {"channel": "chat:recover", "data": {"m": m}})
    again = await events.wait_for("subscribed")
    assert again.was_recovering and again.recovered
    got = [(await events.wait_for("publication")).pub for _ in range(2)]
    assert [(p.offset, p.data) for p in got] == [(2, {"m": 2}), (3, {"m": 3})]
    assert metric(worker.metrics(), "resonance_recoveries_total", outcome="recovered") >= 1


async def test_server_side_personal_channel_keeps_messages_while_offline(
    worker: WorkerProcess, clients: Clients
) -> None:
    _client, events = await clients.connected(
        worker.ws_url, worker.token("dave"), min_reconnect_delay=1.5, max_reconnect_delay=2.0
    )
    server_sub = await events.wait_for("server_subscribed")
    assert server_sub.channel == "personal:#dave" and server_sub.recoverable
    await api_call(worker, "publish", {"channel": "personal:#dave", "data": "while online"})
    assert (await events.wait_for("server_publication")).pub.data == "while online"
    await api_call(worker, "disconnect", {"user": "dave", "code": 3011})
    await events.wait_code("connecting", 3011)
    await api_call(worker, "publish", {"channel": "personal:#dave", "data": "while offline"})
    again = await events.wait_for("server_subscribed")
    assert again.recovered and again.was_recovering
    assert (await events.wait_for("server_publication")).pub.data == "while offline"


async def test_channels_claim_subscribes_server_side(worker: WorkerProcess, clients: Clients) -> None:
    _, events = await clients.connected(worker.ws_url, worker.token("erin", channels=["chat:news"]))
    names = set()
    for _ in range(2):
        names.add((await events.wait_for("server_subscribed")).channel)
    assert names == {"chat:news", "personal:#erin"}
    await api_call(worker, "publish", {"channel": "chat:news", "data": {"headline": 1}})
    assert (await events.wait_for("server_publication")).channel == "chat:news"


async def test_private_channel_needs_a_subscription_token(worker: WorkerProcess, clients: Clients) -> None:
    client, _ = await clients.connected(worker.ws_url, worker.token("frank"))
    denied = SubRecorder()
    sub = client.new_subscription("chat:$vip", events=denied)
    await sub.subscribe()
    unsubscribed = await denied.wait_for("unsubscribed")
    assert unsubscribed.code == 103
    client.remove_subscription(sub)

    async def get_token(channel: str) -> str:
        return worker.sub_token("frank", channel)

    _, events = await subscribed(client, "chat:$vip", get_token=get_token)
    assert "subscribed" in events.names()


async def test_rpc_builtin_methods(worker: WorkerProcess, clients: Clients) -> None:
    client, _ = await clients.connected(worker.ws_url, worker.token("gina"))
    assert (await client.rpc("echo", {"x": [1, 2]})).data == {"x": [1, 2]}
    assert (await client.rpc("whoami", None)).data == {"user": "gina", "client": client.client_id}
    with pytest.raises(centrifuge.ReplyError) as error:
        await client.rpc("nope", None)
    assert error.value.code == 104


async def test_token_in_url_query(worker: WorkerProcess, clients: Clients) -> None:
    client, _ = await clients.connected(f"{worker.ws_url}?token={worker.token('hank')}")
    assert (await client.rpc("whoami", None)).data["user"] == "hank"


async def test_dev_token_endpoint(worker: WorkerProcess, start_worker: StartWorker, clients: Clients) -> None:
    status, body = await asyncio.to_thread(worker.http, "POST", "/token", {"user": "ivy", "ttl": 60})
    assert status == 200
    client, _ = await clients.connected(worker.ws_url, body["token"])
    assert (await client.rpc("whoami", None)).data["user"] == "ivy"
    assert (await asyncio.to_thread(worker.http, "POST", "/token", {"user": ""}))[0] == 400
    assert (await asyncio.to_thread(worker.http, "POST", "/token", {"user": "x", "ttl": -1}))[0] == 400
    production = start_worker()
    status, body = await asyncio.to_thread(production.http, "POST", "/token", {"user": "ivy"})
    assert status == 403 and "development" in body["error"]


async def test_invalid_tokens_disconnect_3500(worker: WorkerProcess, clients: Clients) -> None:
    for token in (
        jwt.encode({"sub": "x"}, None, "none"),
        jwt.encode({"sub": "x"}, "some-other-secret-long-enough-for-hs256", "HS256"),
    ):
        client, events = clients.new(worker.ws_url, token)
        await client.connect()
        disconnected = await events.wait_for("disconnected")
        assert disconnected.code == 3500


async def test_expired_and_not_yet_valid_tokens_go_through_get_token(
    worker: WorkerProcess, clients: Clients
) -> None:
    now = time.time()
    for stale in (
        jwt.encode({"sub": "jo", "exp": int(now) - 10}, JWT_SECRET, "HS256"),
        jwt.encode({"sub": "jo", "nbf": int(now) + 600}, JWT_SECRET, "HS256"),
    ):
        # Without get_token the SDK gives up as unauthorized after error 109.
        client, events = clients.new(worker.ws_url, stale)
        await client.connect()
        error = await events.wait_for("error")
        assert isinstance(error.error, centrifuge.ReplyError) and error.error.code == 109
        assert (await events.wait_for("disconnected")).code == 1  # the SDK's "unauthorized"

        async def get_token() -> str:
            return worker.token("jo")

        client, events = clients.new(worker.ws_url, stale, get_token=get_token)
        await client.connect()
        await events.wait_for("connected")


async def test_no_token_is_a_bad_request_unless_anonymous_allowed(
    worker: WorkerProcess, start_worker: StartWorker, clients: Clients
) -> None:
    client, events = clients.new(worker.ws_url)
    await client.connect()
    assert (await events.wait_for("disconnected")).code == 3501
    anonymous = start_worker({"RESONANCE_ALLOW_ANONYMOUS": "true"})
    client, _ = await clients.connected(anonymous.ws_url)
    assert (await client.rpc("whoami", None)).data["user"] == ""
    denied = SubRecorder()
    sub = client.new_subscription("chat:x", events=denied)
    await sub.subscribe()
    assert (await denied.wait_for("unsubscribed")).code == 103


async def test_token_refresh_keeps_the_connection(start_worker: StartWorker, clients: Clients) -> None:
    worker = start_worker({"RESONANCE_EXPIRED_CLOSE_DELAY_SECONDS": "1"})
    calls = 0

    async def get_token() -> str:
        nonlocal calls
        calls += 1
        return worker.token("kim", ttl=2)

    client, events = await clients.connected(worker.ws_url, worker.token("kim", ttl=2), get_token=get_token)
    await asyncio.sleep(5)
    assert calls >= 2
    assert [name for name, _ in events.seen if name in ("connecting", "disconnected")] == ["connecting"]
    assert (await client.rpc("whoami", None)).data["user"] == "kim"


async def test_expired_connection_without_refresh_is_closed_3005(
    start_worker: StartWorker, clients: Clients
) -> None:
    worker = start_worker({"RESONANCE_EXPIRED_CLOSE_DELAY_SECONDS": "0.5"})
    _client, events = await clients.connected(worker.ws_url, worker.token("lee", ttl=2))
    seen = await events.wait_code("connecting", 3005)
    assert seen.reason == "connection expired"
    assert (await events.wait_for("disconnected")).code == 1


async def test_graceful_shutdown_disconnects_with_reconnect_code(
    start_worker: StartWorker, clients: Clients
) -> None:
    worker = start_worker({"RESONANCE_SHUTDOWN_DRAIN_SECONDS": "1"})
    recorders = []
    for n in range(3):
        _, events = await clients.connected(worker.ws_url, worker.token(f"user{n}"), min_reconnect_delay=5)
        recorders.append(events)
    code = await asyncio.to_thread(worker.stop)
    assert code == 0
    for events in recorders:
        connecting = [ctx for name, ctx in events.seen if name == "connecting" and ctx.code == 3001]
        assert connecting and connecting[0].reason == "shutdown"
