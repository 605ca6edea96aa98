"""The WebSocket driver's writing, against a real worker: frames of every length
class reach a real SDK intact, and what one loop iteration queued for a
connection leaves in one frame, newline-separated, as Centrifugo batches it."""

from __future__ import annotations

import json
from collections.abc import Callable

import aiohttp

from tests.harness.worker import WorkerProcess, api_call
from tests.worker.transport.conftest import Clients
from tests.worker.transport.test_sdk import subscribed

StartWorker = Callable[..., WorkerProcess]


async def test_publications_of_every_frame_length_reach_an_sdk_subscriber(
    start_worker: StartWorker, clients: Clients
) -> None:
    # RFC 6455 encodes a payload length in 7 bits (< 126), 16 bits (< 65536) or 64 bits.
    worker = start_worker({"RESONANCE_LIMITS__MAX_MESSAGE_BYTES": "400000"})
    reader, _ = await clients.connected(worker.ws_url, worker.token("reader"))
    _, events = await subscribed(reader, "chat:sizes")
    sizes = [1, 80, 125, 126, 1000, 65_400, 65_536, 70_000, 300_000]
    for size in sizes:
        status, body = await api_call(worker, "publish", {"channel": "chat:sizes", "data": "x" * size})
        assert status == 200, body
    for size in sizes:
        ctx = await events.wait_for("publication")
        assert ctx.pub.data == "x" * size


async def test_what_one_loop_iteration_queued_leaves_in_one_frame(worker: WorkerProcess) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(worker.ws_url)
        await ws.send_str(json.dumps({"id": 1, "connect": {"token": worker.token("batcher")}}))
        assert "connect" in json.loads((await ws.receive(timeout=5)).data)
        commands = [
            {"id": 2, "subscribe": {"channel": "chat:batched"}},
            {"id": 3, "publish": {"channel": "chat:batched", "data": {"n": 1}}},
        ]
        await ws.send_str("\n".join(json.dumps(c) for c in commands))
        frame = await ws.receive(timeout=5)
        lines = [json.loads(line) for line in frame.data.split("\n")]
        # The subscribe reply, the publication pushed to the publisher itself, the publish reply.
        assert [line.get("id") for line in lines] == [2, None, 3]
        assert lines[1]["push"]["pub"]["data"] == {"n": 1}
        assert "subscribe" in lines[0] and "publish" in lines[2]
        await ws.close()
