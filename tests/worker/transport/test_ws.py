"""The WebSocket driver's writing, against a real worker: frames of every length
class reach a real SDK intact, and what one loop iteration queued for a
connection leaves in one frame, newline-separated, as Centrifugo batches it."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Callable

import aiohttp
import pytest

from bench.load import wsframes
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


async def test_a_server_close_waits_for_the_clients_close_frame(worker: WorkerProcess) -> None:
    """RFC 6455 7.1.1: after its close frame the worker keeps the socket open until the client answers
    with its own, so a client still writing (a pong, its answer) gets no reset that would discard the
    unread close frame and its code; then the worker ends the TCP connection."""
    key = base64.b64encode(os.urandom(16)).decode()
    reader, writer = await asyncio.open_connection("127.0.0.1", worker.port)
    try:
        writer.write(wsframes.handshake_request("127.0.0.1", worker.port, "/connection/websocket", key))
        head = b""
        while (length := wsframes.parse_handshake_response(head, key)) is None:
            head += await asyncio.wait_for(reader.read(4096), 5)
        parser = wsframes.FrameParser()
        frames = parser.feed(head[length:])
        connect = {"id": 1, "connect": {"token": worker.token("closer")}}
        writer.write(wsframes.encode_frame(0x1, json.dumps(connect).encode()))
        while not frames:
            frames += parser.feed(await asyncio.wait_for(reader.read(4096), 5))
        assert b'"connect"' in frames.pop(0)[1]
        status, _ = await api_call(worker, "disconnect", {"user": "closer", "code": 3011, "reason": "bye"})
        assert status == 200
        while not any(opcode == 0x8 for opcode, _ in frames):
            frames += parser.feed(await asyncio.wait_for(reader.read(4096), 5))
        close = next(payload for opcode, payload in frames if opcode == 0x8)
        assert close == wsframes.close_payload(3011, "bye")
        with pytest.raises(TimeoutError):  # still open: no end of stream while the client has not answered
            await asyncio.wait_for(reader.read(4096), 0.5)
        writer.write(wsframes.encode_frame(0x8, wsframes.close_payload(3011)))
        assert await asyncio.wait_for(reader.read(4096), 5) == b""  # then the worker ends the connection
    finally:
        writer.close()
