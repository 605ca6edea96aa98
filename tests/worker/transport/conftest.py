"""Real worker processes and real centrifuge-python clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import centrifuge
import pytest

from tests.harness.worker import WorkerProcess


class _EventLog:
    """Events in arrival order, both kept (``seen``) and queued for ``wait_for``."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.seen: list[tuple[str, Any]] = []

    async def _put(self, name: str, ctx: Any) -> None:
        self.seen.append((name, ctx))
        await self.events.put((name, ctx))

    async def wait_for(self, name: str, timeout: float = 10.0) -> Any:
        """The next queued ``name`` event (earlier events of other names are consumed)."""

        async def until() -> Any:
            while True:
                event, ctx = await self.events.get()
                if event == name:
                    return ctx

        return await asyncio.wait_for(until(), timeout)

    def names(self) -> list[str]:
        return [name for name, _ in self.seen]


class Recorder(_EventLog, centrifuge.ClientEventHandler):
    """Every client event, in order, as (name, context)."""

    async def on_connecting(self, ctx: Any) -> None:
        await self._put("connecting", ctx)

    async def on_connected(self, ctx: Any) -> None:
        await self._put("connected", ctx)

    async def on_disconnected(self, ctx: Any) -> None:
        await self._put("disconnected", ctx)

    async def on_error(self, ctx: Any) -> None:
        await self._put("error", ctx)

    async def on_subscribed(self, ctx: Any) -> None:
        await self._put("server_subscribed", ctx)

    async def on_publication(self, ctx: Any) -> None:
        await self._put("server_publication", ctx)

    async def wait_code(self, name: str, code: int, timeout: float = 10.0) -> Any:
        """The next ``name`` event with this code."""

        async def until() -> Any:
            while True:
                ctx = await self.wait_for(name, timeout)
                if ctx.code == code:
                    return ctx

        return await asyncio.wait_for(until(), timeout)


class SubRecorder(_EventLog, centrifuge.SubscriptionEventHandler):
    """Every subscription event, in order, as (name, context)."""

    async def on_subscribing(self, ctx: Any) -> None:
        await self._put("subscribing", ctx)

    async def on_subscribed(self, ctx: Any) -> None:
        await self._put("subscribed", ctx)

    async def on_unsubscribed(self, ctx: Any) -> None:
        await self._put("unsubscribed", ctx)

    async def on_publication(self, ctx: Any) -> None:
        await self._put("publication", ctx)

    async def on_join(self, ctx: Any) -> None:
        await self._put("join", ctx)

    async def on_leave(self, ctx: Any) -> None:
        await self._put("leave", ctx)

    async def on_error(self, ctx: Any) -> None:
        await self._put("error", ctx)


class Clients:
    """Makes SDK clients and disconnects them all at the end of a test."""

    def __init__(self) -> None:
        self.clients: list[centrifuge.Client] = []

    def new(self, url: str, token: str = "", **kwargs: Any) -> tuple[centrifuge.Client, Recorder]:
        recorder = Recorder()
        kwargs.setdefault("min_reconnect_delay", 0.2)
        kwargs.setdefault("max_reconnect_delay", 1.0)
        client = centrifuge.Client(url, token=token, events=recorder, proxy=None, **kwargs)
        self.clients.append(client)
        return client, recorder

    async def connected(self, url: str, token: str = "", **kwargs: Any) -> tuple[centrifuge.Client, Recorder]:
        client, recorder = self.new(url, token, **kwargs)
        await client.connect()
        await client.ready(timeout=10)
        return client, recorder

    async def close(self) -> None:
        for client in self.clients:
            await client.disconnect()


@pytest.fixture
async def clients() -> AsyncIterator[Clients]:
    made = Clients()
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start workers with extra settings; all are stopped after the test."""
    started: list[WorkerProcess] = []

    def start(
        env: dict[str, str] | None = None, name: str = "worker", timeout: float | None = None
    ) -> WorkerProcess:
        made = WorkerProcess(tmp_path, env, name=name)
        worker = made.start() if timeout is None else made.start(timeout=timeout)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """One worker with default settings (and fast timers) shared by a module's tests."""
    process = WorkerProcess(
        tmp_path_factory.mktemp("worker"),
        {"RESONANCE_DEV_MODE": "true", "RESONANCE_LIMITS__USER_PUBLISH_RATE": "0"},
    ).start()
    yield process
    process.stop()
