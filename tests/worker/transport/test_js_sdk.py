"""The official npm ``centrifuge`` SDK (centrifuge-js under Node) against real
worker processes, side by side with centrifuge-python."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.harness.jsclient import JsClient, JsClientError
from tests.harness.worker import WorkerProcess, api_call
from tests.worker.transport.conftest import Clients
from tests.worker.transport.test_sdk import subscribed

pytestmark = pytest.mark.node

StartWorker = Callable[..., WorkerProcess]


async def js_connect(js: JsClient, **args: Any) -> None:
    """``connect``, then wait for the SDK's connected (or disconnected) event. Also
    tolerates the older tests/js/client.mjs that read ``ctx.client`` from ``ready()``."""
    try:
        await js.call("connect", **args)
    except JsClientError as exc:
        if "reading 'client'" not in str(exc):
            raise
    await js.wait_for(lambda e: e.get("event") in ("connected", "disconnected"), what="connected")


async def test_js_client_chats_with_a_python_client(worker: WorkerProcess, clients: Clients) -> None:
    async with JsClient() as js:
        await js_connect(js, url=worker.ws_url, token=worker.token("js-user"))
        await js.call("subscribe", channel="chat:interop", joinLeave=True)
        py, _ = await clients.connected(worker.ws_url, worker.token("py-user"))
        py_sub, py_events = await subscribed(py, "chat:interop")
        join = await js.wait_for(lambda e: e.get("event") == "join" and e["info"]["user"] == "py-user")
        assert join["channel"] == "chat:interop"
        await py_sub.publish({"from": "python"})
        pub = await js.wait_for(lambda e: e.get("event") == "publication")
        assert pub["data"] == {"from": "python"} and pub["info"]["user"] == "py-user"
        await js.call("publish", channel="chat:interop", data={"from": "js"})
        got = await py_events.wait_for("publication")
        while got.pub.data != {"from": "js"}:
            got = await py_events.wait_for("publication")
        presence = await js.call("presence", channel="chat:interop")
        assert {c["user"] for c in presence["clients"].values()} == {"js-user", "py-user"}
        stats = await js.call("presenceStats", channel="chat:interop")
        assert stats == {"numClients": 2, "numUsers": 2}
        history = await js.call("history", channel="chat:interop", limit=10)
        assert [p["data"] for p in history["publications"]] == [{"from": "python"}, {"from": "js"}]
        assert (await js.call("rpc", method="echo", data={"x": 1}))["data"] == {"x": 1}
        with pytest.raises(JsClientError) as error:
            await js.call("rpc", method="nope", data=None)
        assert error.value.code == 104


async def test_js_client_recovers_after_forced_disconnect(worker: WorkerProcess) -> None:
    async with JsClient() as js:
        await js_connect(
            js,
            url=worker.ws_url,
            token=worker.token("js-rec"),
            minReconnectDelay=1500,
            maxReconnectDelay=2000,
        )
        await js.call("subscribe", channel="chat:js-recover")
        await api_call(worker, "publish", {"channel": "chat:js-recover", "data": 1})
        await js.wait_for(lambda e: e.get("event") == "publication" and e["data"] == 1)
        await api_call(worker, "disconnect", {"user": "js-rec", "code": 3011})
        await js.wait_for(lambda e: e.get("event") == "connecting" and e["code"] == 3011)
        for n in (2, 3):
            await api_call(worker, "publish", {"channel": "chat:js-recover", "data": n})
        again = await js.wait_for(lambda e: e.get("event") == "subscribed" and e["wasRecovering"], timeout=15)
        assert again["recovered"]
        await js.wait_for(lambda e: e.get("event") == "publication" and e["data"] == 3)
        assert [e["data"] for e in js.of("publication", "chat:js-recover")] == [1, 2, 3]


async def test_js_client_refreshes_its_token(start_worker: StartWorker) -> None:
    worker = start_worker({"RESONANCE_EXPIRED_CLOSE_DELAY_SECONDS": "1"})
    async with JsClient() as js:
        await js_connect(js, url=worker.ws_url, token=worker.token("js-refresh", ttl=2), refreshTokens=True)
        # Answer every token request for a while: the SDK refreshes about every second.
        deadline = asyncio.get_running_loop().time() + 5
        answered = 0
        while asyncio.get_running_loop().time() < deadline:
            await js.wait_for(lambda e, n=answered: len(js.of("get_token")) > n, timeout=10, what="get_token")
            answered = len(js.of("get_token"))
            await js.call("setToken", token=worker.token("js-refresh", ttl=2))
        assert answered >= 3
        assert not js.of("disconnected")
        assert [e["code"] for e in js.of("connecting")] == [0], json.dumps(js.events)
        assert (await js.call("rpc", method="whoami", data=None))["data"]["user"] == "js-refresh"


async def test_js_client_sees_limits_and_token_errors(
    start_worker: StartWorker, worker: WorkerProcess
) -> None:
    async with JsClient() as js:
        with pytest.raises(JsClientError):
            await js.call("connect", url=worker.ws_url, token="not-a-jwt", timeout=2000)
        disconnected = await js.wait_for(lambda e: e.get("event") == "disconnected")
        assert disconnected["code"] == 3500
    limited = start_worker({"RESONANCE_LIMITS__MAX_CHANNELS": "1", "RESONANCE_PERSONAL_CHANNEL": "false"})
    async with JsClient() as js:
        await js_connect(js, url=limited.ws_url, token=limited.token("js-limit"))
        await js.call("subscribe", channel="chat:one")
        with pytest.raises(JsClientError):
            await js.call("subscribe", channel="chat:two", timeout=2000)
        unsubscribed = await js.wait_for(
            lambda e: e.get("event") == "unsubscribed" and e["channel"] == "chat:two"
        )
        assert unsubscribed["code"] == 106
