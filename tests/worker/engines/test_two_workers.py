"""A pod goes away and the real centrifuge-python SDK, reconnecting on its own
with its saved stream position, lands on the *other* worker of the same Redis
and recovers exactly what it missed. (Fan-out, presence, join/leave and the
shared rate limit across two workers are in tests/worker/transport/test_redis_cluster.py,
where a fresh client recovers with ``get_state``.)

The client reaches the workers through a plain TCP relay on loopback, standing
in for the ingress: switching its target and cutting its connections is what a
pod going away looks like to the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import centrifuge
import pytest

from tests.harness.redis import RedisServer
from tests.harness.worker import WorkerProcess, api_call
from tests.worker.transport.conftest import Clients, SubRecorder

pytestmark = pytest.mark.redis

_prefixes = itertools.count()


class Relay:
    """Forwards TCP connections to a worker; ``switch`` moves them to another."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def start(self) -> Relay:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/connection/websocket"

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_writer.close()
            return
        self._open.update((client_writer, upstream_writer))

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            writer.close()
            self._open.discard(writer)

        await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer))

    def switch(self, target_port: int) -> None:
        """New connections go to ``target_port``; the open ones are cut, as a dying pod's would be."""
        self.target_port = target_port
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    async def close(self) -> None:
        self.switch(self.target_port)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
def two_workers(redis_server: RedisServer, tmp_path: Path) -> Iterator[tuple[WorkerProcess, WorkerProcess]]:
    env = {
        "RESONANCE_ENGINE": "redis",
        "RESONANCE_REDIS_URL": redis_server.url,
        "RESONANCE_REDIS_PREFIX": f"two-workers-{next(_prefixes)}",
    }
    a = WorkerProcess(tmp_path, env, name="worker-a").start()
    try:
        b = WorkerProcess(tmp_path, env, name="worker-b").start()
        try:
            yield a, b
        finally:
            b.stop()
    finally:
        a.stop()


@pytest.fixture
async def clients() -> AsyncIterator[Clients]:
    made = Clients()
    try:
        yield made
    finally:
        await made.close()


async def subscribed(client: centrifuge.Client, channel: str, **options: Any) -> tuple[Any, SubRecorder]:
    events = SubRecorder()
    sub = client.new_subscription(channel, events=events, **options)
    await sub.subscribe()
    await sub.ready(timeout=10)
    return sub, events


async def test_recovery_after_reconnecting_to_the_other_worker(
    two_workers: tuple[WorkerProcess, WorkerProcess], clients: Clients
) -> None:
    a, b = two_workers
    relay = await Relay(a.port).start()
    try:
        carol, carol_events = await clients.connected(
            relay.ws_url, a.token("carol"), min_reconnect_delay=1.5, max_reconnect_delay=2.0
        )
        _, events = await subscribed(carol, "chat:move")
        assert (await events.wait_for("subscribed")).recoverable
        status, _ = await api_call(b, "publish", {"channel": "chat:move", "data": {"m": 1}})
        assert status == 200
        assert (await events.wait_for("publication")).pub.data == {"m": 1}

        relay.switch(b.port)  # worker a "goes away"; carol will come back on b
        await carol_events.wait_for("connecting")
        for m in (2, 3):
            status, _ = await api_call(a, "publish", {"channel": "chat:move", "data": {"m": m}})
            assert status == 200

        again = await events.wait_for("subscribed")
        assert again.was_recovering
        assert again.recovered
        missed = [(await events.wait_for("publication")).pub for _ in range(2)]
        assert [(p.offset, p.data) for p in missed] == [(2, {"m": 2}), (3, {"m": 3})]
    finally:
        await relay.close()
