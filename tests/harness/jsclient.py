"""Drive the official npm ``centrifuge`` SDK (in Node) from async tests.

``tests/js/client.mjs`` wraps a real centrifuge-js client: commands go in as
JSON lines on its stdin, replies and SDK events come back as JSON lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

JS_DIR = Path(__file__).resolve().parents[1] / "js"


class JsClientError(RuntimeError):
    """An SDK call rejected; ``code`` is the protocol error code when there is one."""

    def __init__(self, op: str, error: dict[str, Any]) -> None:
        super().__init__(f"{op}: {error.get('message')} (code {error.get('code')})")
        self.code = error.get("code")
        self.error = error


class JsClient:
    """One centrifuge-js client in a Node process (``script``: another driver in tests/js)."""

    def __init__(self, script: str = "client.mjs", *, node_args: tuple[str, ...] = ()) -> None:
        self.script = script
        self.node_args = node_args
        self.events: list[dict[str, Any]] = []
        self._proc: asyncio.subprocess.Process | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_id = 0
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    async def start(self) -> JsClient:
        node = shutil.which("node")
        if node is None or not (JS_DIR / "node_modules" / "centrifuge").exists():
            raise RuntimeError("Node or tests/js/node_modules missing: run `make deps`")
        self._proc = await asyncio.create_subprocess_exec(
            node, *self.node_args, str(JS_DIR / self.script), cwd=JS_DIR,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        async for raw in self._proc.stdout:
            message = json.loads(raw)
            if "id" in message and message["id"] in self._pending:
                self._pending.pop(message["id"]).set_result(message)
            else:
                self.events.append(message)
                self._changed.set()

    async def call(self, op: str, timeout: float = 15.0, **args: Any) -> Any:
        """Run one SDK operation; return its result or raise ``JsClientError``."""
        assert self._proc is not None and self._proc.stdin is not None
        self._next_id += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[self._next_id] = future
        self._proc.stdin.write((json.dumps({"id": self._next_id, "op": op, **args}) + "\n").encode())
        await self._proc.stdin.drain()
        reply = await asyncio.wait_for(future, timeout)
        if not reply["ok"]:
            raise JsClientError(op, reply["error"])
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
            raise AssertionError(f"no {what} within {timeout} s; events: {self.events[-10:]}") from None

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

    async def __aenter__(self) -> JsClient:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
