"""The official protobuf SDKs against real worker processes: centrifuge-java 0.4.1 (as on Android; Dart and
Swift speak the same wire format), centrifuge-js's protobuf build in Node and in headless Chromium, each
beside centrifuge-js in JSON. Two workers share one real Redis; the SDK connects to the first, and the server
API calls of the flow (publications, the forced disconnect) go to the second.

The flows are ``tests.harness.sdkflows``: ``shared_channel`` (the one Centrifugo passes in
``tests/bench/test_sdks_against_centrifugo.py``) and ``living_client``."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from resonance_worker.tokens import mint_connection_token

from tests.harness import sdkflows
from tests.harness.javaclient import JavaClient
from tests.harness.jsclient import BrowserClient, JsClient
from tests.harness.processes import free_port
from tests.harness.redis import RedisServer
from tests.harness.sdkclient import SdkClient
from tests.harness.worker import JWT_SECRET, WorkerProcess, api_call
from tests.worker.transport.test_living import ppg_batches

pytestmark = [pytest.mark.node, pytest.mark.redis, pytest.mark.timeout(300)]

PAGE_PORT = free_port()
"""The Chromium page's port: its origin, http://127.0.0.1:<port>, is on the workers' allowed_origins."""
PROTOBUF_SDKS: dict[str, Callable[[], SdkClient]] = {
    "java": JavaClient,
    "js-node": lambda: JsClient("protobuf"),
    "js-chromium": lambda: BrowserClient(PAGE_PORT),
}


@pytest.fixture(scope="module")
def pair(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[WorkerProcess, WorkerProcess]]:
    workdir: Path = tmp_path_factory.mktemp("sdk-workers")
    env = {
        "RESONANCE_ENGINE": "redis",
        "RESONANCE_REDIS_URL": redis_server.url,
        "RESONANCE_REDIS_PREFIX": f"sdk-{uuid.uuid4().hex[:8]}",
        "RESONANCE_LIMITS__USER_PUBLISH_RATE": "0",
        "RESONANCE_EXPIRED_CLOSE_DELAY_SECONDS": "1",
        "RESONANCE_ALLOWED_ORIGINS": f'["http://127.0.0.1:{PAGE_PORT}"]',
    }
    started = [WorkerProcess(workdir, env, name=name).start() for name in ("worker-a", "worker-b")]
    yield started[0], started[1]
    for worker in started:
        worker.stop()


def mint(user: str, ttl: float = 3600.0) -> str:
    return mint_connection_token(JWT_SECRET, sub=user, now=time.time(), ttl=ttl)


@pytest.mark.parametrize("sdk", sorted(PROTOBUF_SDKS))
async def test_an_official_protobuf_sdk_against_two_workers(
    pair: tuple[WorkerProcess, WorkerProcess], sdk: str
) -> None:
    a, b = pair

    async def api(method: str, body: dict[str, Any]) -> tuple[int, Any]:
        return await api_call(b, method, body)

    async with PROTOBUF_SDKS[sdk]() as pb, JsClient("json") as js:
        await sdkflows.shared_channel(pb, js, url=a.ws_url, mint=mint, channel=f"chat:mix-{sdk}")
        await pb.call("disconnect")  # its event may come later; a new connect must not take it for its own
        await pb.wait_for(lambda e: e.get("event") == "disconnected", what="the disconnect")
        await sdkflows.living_client(
            pb,
            url=a.ws_url,
            mint=mint,
            api=api,
            user=f"phone-{sdk}",
            channel=f"chat:away-{sdk}",
            ppg=ppg_batches(12),
        )
    a_log, b_log = a.log(), b.log()
    assert "Traceback" not in a_log and "Traceback" not in b_log


async def test_binary_data_from_java_closes_json_readers_as_centrifugo_does(
    pair: tuple[WorkerProcess, WorkerProcess],
) -> None:
    """The Centrifugo test of the same name (``tests/bench/test_sdks_against_centrifugo.py``), against the
    worker: accepted and stored; protobuf readers get the bytes; JSON readers (on either worker) are closed
    with 3506, terminal for the SDK; a JSON client that later reads the history is closed the same way."""
    a, b = pair
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
            urls=[a.ws_url, b.ws_url, a.ws_url, b.ws_url, a.ws_url],
            mint=mint,
            channel="chat:binary-sdk",
        )


REFUSALS = [
    (
        "disconnected",
        None,
        3501,
        "bad request: no token (in connect or ?token=) and anonymous connections are off",
    ),
    ("presence", 108, "not available"),
    ("history", 108, "not available"),
    ("rpc", 104, "method not found"),
    ("unsubscribed", "nowhere:x", 102, "unknown channel"),
    ("unsubscribed", "personal:#not-{user}", 103, "permission denied"),
    ("unsubscribed", "chat:codes", 2000, "server unsubscribe"),
    ("disconnected", None, 4501, "gone for good"),
]


@pytest.mark.parametrize(
    "sdk",
    [
        pytest.param(lambda: JsClient("json"), id="js-json"),
        pytest.param(lambda: JsClient("protobuf"), id="js-protobuf"),
        pytest.param(JavaClient, id="java"),
    ],
)
async def test_the_same_error_and_disconnect_codes_in_both_encodings(
    pair: tuple[WorkerProcess, WorkerProcess], sdk: Callable[[], SdkClient]
) -> None:
    """Error replies, unsubscribe pushes and close frames carry the same codes and reasons to a JSON and
    a protobuf client, as their SDKs report them (``sdkflows.refusals``)."""
    a, _ = pair
    user = f"codes-{uuid.uuid4().hex[:6]}"

    async def api(method: str, body: dict[str, Any]) -> tuple[int, Any]:
        return await api_call(a, method, body)

    async with sdk() as client:
        told = await sdkflows.refusals(client, url=a.ws_url, mint=mint, api=api, user=user)
    expected = [tuple(str(v).format(user=user) if isinstance(v, str) else v for v in t) for t in REFUSALS]
    assert sorted(told, key=str) == sorted(expected, key=str)
