"""Drive an official Centrifuge SDK in another runtime (Node, Chromium, the JVM) from async tests.

Each driver (``tests/js/client.mjs``, ``tests/js/browser.mjs``, ``tests/java``'s ``Driver``) wraps a real
SDK client and speaks the same line protocol: one op per line on its stdin (``{"id": 1, "op": "connect",
...}``), replies (``{"id": 1, "ok": true, "result": ...}`` or ``{"id": 1, "ok": false, "error": {...}}``)
and SDK events (``{"event": "publication", ...}``) as JSON lines on its stdout. So one test flow runs
unchanged against every SDK and encoding: see the ops in ``tests/js/client.mjs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Self

from tests.harness.processes import die_with_parent


class SdkClientError(RuntimeError):
    """An SDK call rejected; ``code`` is the protocol error code when there is one."""

    def __init__(self, op: str, error: dict[str, Any]) -> None:
        super().__init__(f"{op}: {error.get('message')} (code {error.get('code')})")
        self.code = error.get("code")
        self.error = error


class SdkClient:
    """One SDK client in a child process, started by :meth:`start` and ended by :meth:`close`."""

    name = "sdk"
    hello: dict[str, Any]

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._proc: asyncio.subprocess.Process | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_id = 0
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self.stderr = b""

    def command(self) -> tuple[Sequence[str], Path]:
        """The driver's argv and working directory; raise ``RuntimeError`` when it cannot run here."""
        raise NotImplementedError

    async def start(self) -> Self:
        argv, cwd = self.command()
        self._proc = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            limit=2**24, preexec_fn=die_with_parent(),
        )  # fmt: skip
        self._reader = asyncio.create_task(self._read())
        # Returns once the runtime has started (a JVM or a browser takes seconds), so tokens minted after
        # this are fresh when they reach the server.
        self.hello = await self.call("hello", timeout=60)
        return self

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        async for raw in self._proc.stdout:
            try:
                message = json.loads(raw)
            except ValueError:  # a driver's stray line (e.g. a JVM warning) is not an event
                continue
            if "id" in message and message["id"] in self._pending:
                self._pending.pop(message["id"]).set_result(message)
            else:
                self.events.append(message)
                self._changed.set()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(RuntimeError(f"{self.name} driver exited: {await self._stderr()}"))

    async def _stderr(self) -> str:
        assert self._proc is not None and self._proc.stderr is not None
        with contextlib.suppress(Exception):
            self.stderr += await asyncio.wait_for(self._proc.stderr.read(), 2)
        return self.stderr.decode(errors="replace")[-2000:]

    async def call(self, op: str, timeout: float = 15.0, **args: Any) -> Any:
        """Run one SDK operation; return its result or raise :class:`SdkClientError`."""
        assert self._proc is not None and self._proc.stdin is not None
        self._next_id += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[self._next_id] = future
        self._proc.stdin.write((json.dumps({"id": self._next_id, "op": op, **args}) + "\n").encode())
        await self._proc.stdin.drain()
        reply = await asyncio.wait_for(future, timeout)
        if not reply["ok"]:
            raise SdkClientError(op, reply["error"])
        return reply["result"]

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], *, timeout: float = 10.0, what: str = "event"
    ) -> dict[str, Any]:
        """The first event (already seen or still to come) that satisfies ``predicate``."""

        async def scan() -> dict[str, Any]:
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                self._changed.clear()
                await self._changed.wait()

        try:
            return await asyncio.wait_for(scan(), timeout)
        except TimeoutError:
            recent = self.events[-40:]
            raise AssertionError(f"{self.name}: no {what} within {timeout} s; events: {recent}") from None

    def of(self, kind: str, channel: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events
            if e.get("event") == kind and (channel is None or e.get("channel") == channel)
        ]

    async def close(self) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(Exception):
            await self.call("close", timeout=3)
        with contextlib.suppress(ProcessLookupError):
            self._proc.kill()
        await self._proc.wait()
        if self._reader is not None:
            self._reader.cancel()
        self._proc = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
