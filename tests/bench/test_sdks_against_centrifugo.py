"""The official protobuf SDKs against the reference server, Centrifugo 6.9.1: the drivers in tests/java and
tests/js work (so a failure against our worker is the worker's), and what Centrifugo does with a JSON and a
protobuf client in one channel is pinned down, including binary data that JSON subscribers cannot read.

Drivers: centrifuge-java 0.4.1 (JVM), centrifuge-js's protobuf build in Node and in headless Chromium, and
centrifuge-js in JSON as the other side of the channel."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable

import pytest

from bench.load import protocol
from bench.load.scenario import Target
from tests.harness import sdkflows
from tests.harness.javaclient import JavaClient
from tests.harness.jsclient import BrowserClient, JsClient
from tests.harness.sdkclient import SdkClient

pytestmark = [pytest.mark.node, pytest.mark.timeout(300)]

PROTOBUF_SDKS: dict[str, Callable[[], SdkClient]] = {
    "java": JavaClient,
    "js-node": lambda: JsClient("protobuf"),
    "js-chromium": BrowserClient,
}
NOT_JSON = bytes([0xFF, 0xFE, 0xFD, 0x00, 0x01])


def token(target: Target, user: str, ttl: float = 3600.0) -> str:
    return protocol.mint_token(target.token_secret, user, now=time.time(), ttl=ttl)


@pytest.mark.parametrize("sdk", sorted(PROTOBUF_SDKS))
async def test_a_protobuf_sdk_and_a_json_client_share_a_channel(centrifugo_memory: Target, sdk: str) -> None:
    async with PROTOBUF_SDKS[sdk]() as pb, JsClient("json") as js:
        await sdkflows.shared_channel(
            pb,
            js,
            url=centrifugo_memory.ws_urls[0],
            mint=lambda user: token(centrifugo_memory, user),
            channel=f"chat:mix-{sdk}",
        )


async def test_java_refreshes_an_expiring_token(centrifugo_memory: Target) -> None:
    async with JavaClient() as java:
        first = token(centrifugo_memory, "java-refresh", ttl=4)
        await java.call("connect", url=centrifugo_memory.ws_urls[0], token=first, refreshTokens=True)
        for n in (1, 2):
            await java.wait_for(lambda e, n=n: len(java.of("get_token")) >= n, timeout=10, what="get_token")
            await java.call("setToken", token=token(centrifugo_memory, "java-refresh", ttl=4))
        assert not java.of("disconnected")
        assert [e["code"] for e in java.of("connecting")] == [0]


async def test_centrifugo_disconnects_json_readers_of_binary_data(centrifugo_memory: Target) -> None:
    """What Centrifugo 6.9.1 does when a protobuf client publishes bytes that are not JSON into a channel with
    JSON subscribers (no ``publication_data_format`` set): the publish is accepted and stored; protobuf
    subscribers get the bytes; every JSON subscriber is disconnected with 3506 "inappropriate protocol",
    which the SDKs treat as terminal (no reconnect); and a JSON client that later reads that history (history
    call or recovery) is disconnected the same way. docs/protocol.md records this."""
    channel = "chat:binary"
    url = centrifugo_memory.ws_urls[0]
    async with (
        JavaClient() as java,
        JsClient("protobuf") as pb,
        JsClient("json") as js1,
        JsClient("json") as js2,
    ):
        for client, user in ((java, "java"), (pb, "pb"), (js1, "js1"), (js2, "js2")):
            await client.call("connect", url=url, token=token(centrifugo_memory, user))
            await client.call("subscribe", channel=channel)
        await java.call("publish", channel=channel, b64=base64.b64encode(NOT_JSON).decode())
        for reader in (java, pb):
            got = await reader.wait_for(lambda e: e.get("event") == "publication")
            assert base64.b64decode(got["b64"]) == NOT_JSON and got["data"] is None
        for js in (js1, js2):
            gone = await js.wait_for(lambda e: e.get("event") == "disconnected", what="3506")
            assert (gone["code"], gone["reason"]) == (3506, "inappropriate protocol")
            assert not js.of("publication")
        await java.call("publish", channel=channel, data={"after": 1})
        await pb.wait_for(lambda e: e.get("event") == "publication" and e["data"] == {"after": 1})
        await asyncio.sleep(0.5)
        assert [e["code"] for e in js1.of("connecting")] == [0]  # 3506 is terminal: no reconnect
        async with JsClient("json") as late:
            await late.call("connect", url=url, token=token(centrifugo_memory, "late"))
            await late.call("subscribe", channel=channel)
            with pytest.raises(Exception, match="connection closed"):
                await late.call("history", channel=channel, limit=10)
            gone = await late.wait_for(lambda e: e.get("event") == "disconnected", what="3506")
            assert gone["code"] == 3506
