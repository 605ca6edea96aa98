"""Counting what a fault costs: publications sent, acknowledged by the server
API, and received by each real SDK client - and so how many acknowledged ones
were lost. Used by the fault tests and by ``bench.soak``.

Also :class:`FaultProxy`, a loopback TCP proxy in front of a real server that
can hold every byte in both directions (a dependency that hangs: no error, no
reset, just silence) or cut every connection and refuse new ones (a network
partition), without touching the server other tests share."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import centrifuge

from tests.harness.worker import WorkerProcess


@dataclass
class Ledger:
    """Sent/acked counts of one publisher and what each subscriber received."""

    sent: int = 0
    acked: list[int] = field(default_factory=list)
    failed: int = 0
    received: dict[str, list[int]] = field(default_factory=dict)
    recoveries: dict[str, list[bool]] = field(default_factory=dict)

    def lost(self, client: str) -> list[int]:
        """Acknowledged publications this client never got."""
        got = set(self.received.get(client, ()))
        return [n for n in self.acked if n not in got]

    def duplicates(self, client: str) -> int:
        got = self.received.get(client, [])
        return len(got) - len(set(got))

    def in_order(self, client: str) -> bool:
        got = self.received.get(client, [])
        return all(a < b for a, b in itertools.pairwise(got))

    def complete(self) -> bool:
        return all(not self.lost(c) for c in self.received)

    def summary(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "acknowledged": len(self.acked),
            "failed": self.failed,
            "subscribers": len(self.received),
            "received": sum(len(v) for v in self.received.values()),
            "lost_among_acknowledged": sum(len(self.lost(c)) for c in self.received),
            "duplicates": sum(self.duplicates(c) for c in self.received),
            "out_of_order_subscribers": sum(not self.in_order(c) for c in self.received),
            "resubscribes": sum(len(v) for v in self.recoveries.values()),
            "recovered": sum(sum(v) for v in self.recoveries.values()),
        }


class LedgerSubscriber(centrifuge.SubscriptionEventHandler):  # type: ignore[misc]
    """Writes every publication's ``n`` and every (re)subscription's outcome into the ledger."""

    def __init__(self, ledger: Ledger, name: str) -> None:
        self.ledger = ledger
        self.name = name
        ledger.received[name] = []
        ledger.recoveries[name] = []

    async def on_publication(self, ctx: Any) -> None:
        self.ledger.received[self.name].append(int(ctx.pub.data["n"]))

    async def on_subscribed(self, ctx: Any) -> None:
        if ctx.was_recovering:
            self.ledger.recoveries[self.name].append(bool(ctx.recovered))


def api_publish(worker: WorkerProcess, channel: str, n: int) -> bool:
    """One server-API publish; True when the server acknowledged it."""
    status, _ = worker.api("publish", {"channel": channel, "data": {"n": n}})
    return status == 200


async def publish_steadily(
    ledger: Ledger,
    pick_worker: Callable[[], WorkerProcess],
    channel: str,
    *,
    count: int,
    interval: float,
) -> None:
    """Publish ``count`` numbered messages through the server API of whichever worker
    ``pick_worker`` names at the time, counting acknowledgements."""
    for n in range(1, count + 1):
        ledger.sent += 1
        worker = pick_worker()
        if await asyncio.to_thread(api_publish, worker, channel, n):
            ledger.acked.append(n)
        else:
            ledger.failed += 1
        await asyncio.sleep(interval)


async def wait_complete(ledger: Ledger, timeout: float) -> bool:
    """Wait until every subscriber holds every acknowledged publication."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if ledger.complete():
            return True
        await asyncio.sleep(0.1)
    return ledger.complete()


def stream_namespaces(history_size: int = 10_000) -> str:
    """``RESONANCE_NAMESPACES`` with a ``stream`` namespace whose history outlasts the faults."""
    return json.dumps(
        {
            "stream": {
                "history_size": history_size,
                "history_ttl_seconds": 3600,
                "force_recovery": True,
                "force_positioning": True,
                "allow_subscribe_for_client": True,
            }
        }
    )


class FaultProxy:
    """Forwards loopback TCP connections to ``target_port``, with two faults.

    :meth:`stall`: connections stay open and new ones are accepted, but nothing read from
    either side is passed on until :meth:`resume`, which forwards what was held, in order.
    To the client this is a server that hangs mid-conversation (a SIGSTOP-ed process, a
    black-holed network), not one that fails.

    :meth:`cut`: every open connection is reset and new ones are reset at once until
    :meth:`admit` - the server is unreachable for a while, then reachable again.
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self.connections = 0
        self.held_bytes = 0
        """Bytes read while stalled (forwarded on resume)."""
        self.refusing = False
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def stalled(self) -> bool:
        return not self._flowing.is_set()

    def stall(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def cut(self) -> None:
        """Reset every open connection and refuse new ones until :meth:`admit`."""
        self.refusing = True
        for pipe in list(self._pipes):
            pipe.cancel()

    def admit(self) -> None:
        self.refusing = False

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        self.connections += 1
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                self.target_host, self.target_port
            )
        except OSError:
            writer.transport.abort()
            return
        pipes = [
            asyncio.ensure_future(self._pipe(reader, upstream_writer)),
            asyncio.ensure_future(self._pipe(upstream_reader, writer)),
        ]
        self._pipes.update(pipes)
        try:
            # Either side closing ends the connection, as it would end a direct one.
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pipe in pipes:
                pipe.cancel()
                self._pipes.discard(pipe)
            for end in (writer, upstream_writer):
                end.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if not self._flowing.is_set():
                    self.held_bytes += len(data)
                    await self._flowing.wait()
                writer.write(data)
                await writer.drain()

    async def close(self) -> None:
        self.resume()
        if self._server is not None:
            self._server.close()
        for pipe in list(self._pipes):
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
