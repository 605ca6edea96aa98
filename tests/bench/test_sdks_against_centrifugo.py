"""The official protobuf SDKs against the reference server, Centrifugo 6.9.1: the drivers in tests/java and
tests/js work (so a failure against our worker is the worker's), and what Centrifugo does with a JSON and a
protobuf client in one channel is pinned down, including binary data that JSON subscribers cannot read.

Drivers: centrifuge-java 0.4.1 (JVM), centrifuge-js's protobuf build in Node and in headless Chromium, and
centrifuge-js in JSON as the other side of the channel."""

from __future__ import annotations

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
    url = centrifugo_memory.ws_urls[0]
    async with (
        JavaClient() as java,
        JsClient("protobuf") as pb,
        JsClient("json") as js1,
        JsClient("json") as js2,
        JsClient("json") as late,
    ):
        await sdkflows.binary_data(
            java,
            pb,
            [js1, js2],
            late,
            urls=[url] * 5,
            mint=lambda user: token(centrifugo_memory, user),
            channel="chat:binary",
        )
