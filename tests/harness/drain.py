"""What a drain test needs around the real workers: a loopback balancer whose
backend set the test changes (as a Service's endpoints change at a promotion),
and light protocol clients, so a few hundred real WebSocket clients fit in one
test process.

``ProtocolClient`` speaks the Centrifuge protocol v2 JSON itself (connect,
subscribe with recovery from its last position, pong), reconnects with jitter
after any close as the SDKs do, and writes what it receives into a
``faults.Ledger`` - so it is counted exactly like the SDK clients beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from tests.harness.faults import Ledger


class Balancer:
    """Round-robin TCP forwarding on loopback over a changeable set of backend ports.

    ``set_backends`` changes where new connections go; connections already open
    stay with their backend until one side closes them - as with a Service whose
    endpoints change while old Pods still hold sockets."""

    def __init__(self, backends: list[int]) -> None:
        self.backends = list(backends)
        self.port = 0
        self.opened: dict[int, int] = {}
        self.arrivals: list[tuple[float, int]] = []
        """(time, backend) of every connection forwarded, in order."""
        self.open_now: dict[int, int] = {}
        self._rotation = itertools.count()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> Balancer:
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", 0, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/connection/websocket"

    def set_backends(self, backends: list[int]) -> None:
        self.backends = list(backends)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        backend = self.backends[next(self._rotation) % len(self.backends)]
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", backend)
        except OSError:
            writer.close()
            return
        self.opened[backend] = self.opened.get(backend, 0) + 1
        self.arrivals.append((time.time(), backend))
        self.open_now[backend] = self.open_now.get(backend, 0) + 1
        self._writers.update((writer, upstream_writer))

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()
            self._writers.discard(sink)

        try:
            await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
        finally:
            self.open_now[backend] -= 1

    async def close(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


_CLOSED = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED)


@dataclass
class Closed:
    """One server close a client saw: when (its clock), the WebSocket close code."""

    at: float
    code: int | None


@dataclass
class ProtocolClient:
    """One subscriber to ``channel`` through ``url``; run ``run(stop)`` as a task."""

    name: str
    url: str
    token: str
    channel: str
    ledger: Ledger
    min_delay: float = 0.1
    max_delay: float = 0.6
    offset: int = 0
    epoch: str = ""
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)
    closes: list[Closed] = field(default_factory=list)
    failed_attempts: int = 0
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ledger.received[self.name] = []
        self.ledger.recoveries[self.name] = []

    async def run(self, http: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                async with http.ws_connect(self.url, autoping=True, max_msg_size=0) as ws:
                    await self._serve(ws, stop)
            except (aiohttp.ClientError, OSError, TimeoutError):
                self.failed_attempts += 1
            if stop.is_set():
                return
            await asyncio.sleep(random.uniform(self.min_delay, self.max_delay))

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse, stop: asyncio.Event) -> None:
        await ws.send_str(orjson.dumps({"id": 1, "connect": {"token": self.token}}).decode())
        subscribe: dict[str, Any] = {"channel": self.channel}
        if self.epoch:
            subscribe.update(recover=True, offset=self.offset, epoch=self.epoch)
        await ws.send_str(orjson.dumps({"id": 2, "subscribe": subscribe}).decode())
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while True:
                receiving = asyncio.ensure_future(ws.receive())
                await asyncio.wait((receiving, stopping), return_when=asyncio.FIRST_COMPLETED)
                if not receiving.done():
                    receiving.cancel()
                    await ws.close()
                    return
                msg = receiving.result()
                if msg.type is aiohttp.WSMsgType.TEXT:
                    for line in msg.data.split("\n"):
                        if line:
                            await self._frame(ws, orjson.loads(line))
                elif msg.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSING,
                    aiohttp.WSMsgType.CLOSED,
                ):
                    # The code the server sent (``ws.close_code`` turns 1006 when the reply
                    # cannot be written because the server already closed the socket).
                    code = msg.data if msg.type is aiohttp.WSMsgType.CLOSE else ws.close_code
                    self.closes.append(Closed(time.time(), code))
                    self.subscribed.clear()
                    return
                elif msg.type is aiohttp.WSMsgType.ERROR:
                    self.errors.append(str(msg.data))
                    return
        finally:
            stopping.cancel()

    async def _frame(self, ws: aiohttp.ClientWebSocketResponse, frame: dict[str, Any]) -> None:
        if not frame:
            await ws.send_str("{}")  # the server's ping: answer with a pong
            return
        if "error" in frame:
            self.errors.append(f"{frame.get('id')}: {frame['error']}")
            await ws.close()
            return
        if frame.get("id") == 2:
            result = frame.get("subscribe", {})
            if result.get("was_recovering"):
                self.ledger.recoveries[self.name].append(bool(result.get("recovered")))
            for pub in result.get("publications", []):
                self._publication(pub)
            self.epoch = result.get("epoch", self.epoch)
            self.offset = max(self.offset, int(result.get("offset", 0)))
            self.subscribed.set()
            return
        pub = frame.get("push", {}).get("pub")
        if pub is not None:
            self._publication(pub)

    def _publication(self, pub: dict[str, Any]) -> None:
        self.ledger.received[self.name].append(int(pub["data"]["n"]))
        self.offset = max(self.offset, int(pub.get("offset", 0)))
