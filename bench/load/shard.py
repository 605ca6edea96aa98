"""One load process: holds a contiguous range of connections and runs the phases the coordinator sends.

The coordinator talks to each shard over a ``multiprocessing`` pipe: it sends ``(phase, arguments)`` and gets
back one dict per phase. Every phase is bounded by a timeout, so a stuck server cannot hang a shard.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import heapq
import os
import resource
import time
import urllib.parse
from multiprocessing.connection import Connection
from typing import Any, cast

import aiohttp

from bench.load import procstat, protocol, wire, wsframes
from bench.load.scenario import PublishVia, Scenario, Target, node_of, source_address
from bench.load.stats import PerSecond, Reservoir

# Gap publications of the reconnect storm are numbered from here, so receivers recognise them.
GAP_SEQ_BASE = 1_000_000_000
RESERVOIR_CAPACITY = 200_000


def monotonic_ns() -> int:
    # CLOCK_MONOTONIC is one clock for every process on the machine, so sender and receiver stamps compare.
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


@dataclasses.dataclass
class ShardPlan:
    index: int
    scenario: Scenario
    target: Target
    connections: range
    cpus: frozenset[int] | None = None
    nice: int = 0


class Conn(asyncio.Protocol):
    """One client connection speaking the Centrifugo protocol (JSON or protobuf, :mod:`bench.load.wire`) over
    :mod:`bench.load.wsframes`.

    The object is its own asyncio protocol, so a message costs one synchronous call, no task wake-up; it is
    reused when the connection comes back (reconnect storm)."""

    def __init__(self, shard: Shard, index: int, node: int, room: int, channel: str) -> None:
        self.shard = shard
        self.wire = wire.wire_for(shard.scenario.encoding)
        self.index = index
        self.node = node
        self.room = room
        self.channel = channel
        self.transport: asyncio.Transport | None = None
        self.pending: dict[int, asyncio.Future[dict[str, Any]] | None] = {}
        self.next_id = 0
        self.pong = False
        self.position: protocol.StreamPosition | None = None
        self.gap_seqs: set[int] = set()
        self.token: str | None = None  # kept for reconnects, as the SDKs keep theirs until it expires
        self.closed = True
        self._key = ""
        self._head = b""
        self._upgraded: asyncio.Future[None] | None = None
        self._parser = wsframes.FrameParser()

    # ------------------------------------------------------------ asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.closed = False

    def data_received(self, data: bytes) -> None:
        arrived_ns = monotonic_ns()
        try:
            if self._upgraded is not None and not self._upgraded.done():
                self._head += data
                length = wsframes.parse_handshake_response(self._head, self._key, self.wire.subprotocol)
                if length is None:
                    return
                data, self._head = self._head[length:], b""
                self._upgraded.set_result(None)
            for opcode, payload in self._parser.feed(data):
                if opcode == self.wire.opcode:
                    self._on_message(payload, arrived_ns)
                elif opcode in (wsframes.OP_TEXT, wsframes.OP_BINARY):
                    encoding = self.shard.scenario.encoding
                    raise protocol.ProtocolError(f"opcode {opcode:#x} on a {encoding} connection")
                elif opcode == wsframes.OP_PING:
                    self._write(wsframes.OP_PONG, payload)
                elif opcode == wsframes.OP_CLOSE:
                    code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                    if code != 1000:
                        self.shard.note_error(
                            f"conn {self.index}: closed by the server {code} {payload[2:]!r}"
                        )
                    self._write(wsframes.OP_CLOSE, payload[:2])
                    self._abort()
        except (wsframes.WebSocketError, protocol.ProtocolError) as exc:
            self.shard.note_error(f"conn {self.index}: {exc!r}")
            if self._upgraded is not None and not self._upgraded.done():
                self._upgraded.set_exception(exc)
            self._abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        if self._upgraded is not None and not self._upgraded.done():
            self._upgraded.set_exception(ConnectionError(f"closed during the handshake: {exc!r}"))
        for future in self.pending.values():
            if future is not None and not future.done():
                future.set_exception(ConnectionError("connection closed"))
        self.pending.clear()

    # ------------------------------------------------------------ protocol
    def _write(self, opcode: int, payload: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise ConnectionError("connection closed")
        self.transport.write(wsframes.encode_frame(opcode, payload))

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    async def request(self, build: Any, *args: Any, timeout: float) -> dict[str, Any]:
        command_id = self._new_id()
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[command_id] = future
        try:
            self._write(self.wire.opcode, build(command_id, *args))
            return await asyncio.wait_for(future, timeout)
        finally:
            self.pending.pop(command_id, None)

    def publish_nowait(self, channel: str, data: dict[str, Any]) -> None:
        """Send a publish command; its reply is only checked for an error."""
        command_id = self._new_id()
        self.pending[command_id] = None
        self._write(self.wire.opcode, self.wire.publish_command(command_id, channel, data))

    async def open(
        self, url: str, source: str, token: str, timeout: float, connect_to: str | None = None
    ) -> None:
        """Connect from ``source`` to ``url`` (or to ``connect_to``, ``address:port``, with the URL's host
        in the Host header), upgrade, and send the connect command."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "ws" or parts.hostname is None:
            raise protocol.ProtocolError(f"only ws:// URLs are supported, got {url!r}")
        port = parts.port or 80
        address, dial_port = parts.hostname, port
        if connect_to is not None:
            address, _, dial = connect_to.rpartition(":")
            dial_port = int(dial)
        loop = asyncio.get_running_loop()
        self._key = base64.b64encode(os.urandom(16)).decode()
        self._upgraded = loop.create_future()
        self._parser = wsframes.FrameParser()
        self._head = b""
        self.pending.clear()
        await asyncio.wait_for(
            loop.create_connection(lambda: self, address, dial_port, local_addr=(source, 0)), timeout
        )
        assert self.transport is not None
        path = parts.path or "/"
        self.transport.write(
            wsframes.handshake_request(parts.hostname, port, path, self._key, self.wire.subprotocol)
        )
        await asyncio.wait_for(self._upgraded, timeout)
        result = protocol.reply_result(
            await self.request(self.wire.connect_command, token, timeout=timeout), "connect"
        )
        self.pong = bool(result.get("pong", False))

    async def subscribe(self, timeout: float) -> None:
        recover_from = self.position
        reply = await self.request(
            lambda cid, ch: self.wire.subscribe_command(cid, ch, recover_from=recover_from),
            self.channel,
            timeout=timeout,
        )
        result = protocol.reply_result(reply, "subscribe")
        if recover_from is not None:
            self.shard.note_resubscribe(result)
            for publication in protocol.recovered_publications(self.channel, result):
                self.on_publication(publication, monotonic_ns(), recovered=True)
        position = protocol.position_of(result)
        if position is not None and (self.position is None or position.epoch != self.position.epoch):
            self.position = position
        elif position is not None and self.position is not None:
            self.position = protocol.StreamPosition(
                self.position.epoch, max(self.position.offset, position.offset)
            )

    def on_publication(
        self, publication: protocol.Publication, arrived_ns: int, *, recovered: bool = False
    ) -> None:
        if publication.offset and self.position is not None:
            self.position = protocol.StreamPosition(self.position.epoch, publication.offset)
        payload = protocol.decode_payload(publication.data)
        if payload.seq >= GAP_SEQ_BASE:
            self.gap_seqs.add(payload.seq)
            return
        if not recovered:
            self.shard.on_delivery(payload, self.node, arrived_ns)

    def _on_message(self, frame: bytes, arrived_ns: int) -> None:
        for reply in self.wire.split_frame(frame):
            command_id = reply.get("id")
            if command_id:
                self._on_reply(command_id, reply)
            elif "push" in reply:
                publication = protocol.publication_of(reply["push"])
                if publication is not None:
                    self.on_publication(publication, arrived_ns)
            elif not reply and self.pong:
                self._write(self.wire.opcode, self.wire.pong)

    def _on_reply(self, command_id: int, reply: dict[str, Any]) -> None:
        if command_id not in self.pending:
            return
        future = self.pending[command_id]
        if future is None:  # a fire-and-forget publish
            del self.pending[command_id]
            if "error" in reply:
                self.shard.publish_errors += 1
                self.shard.note_error(f"publish: {reply['error']}")
        elif not future.done():
            future.set_result(reply)

    async def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            with contextlib.suppress(ConnectionError):
                self._write(wsframes.OP_CLOSE, wsframes.close_payload(1000))
            self.transport.close()
        self.closed = True


class Shard:
    def __init__(self, plan: ShardPlan, pipe: Connection) -> None:
        self.plan = plan
        self.pipe = pipe
        self.scenario = plan.scenario
        self.target = plan.target
        nodes = len(self.target.ws_urls)
        self.conns = [
            Conn(
                self, i, node_of(i, nodes), self.scenario.room_of(i), self._channel(self.scenario.room_of(i))
            )
            for i in plan.connections
        ]
        self.by_index = {c.index: c for c in self.conns}
        self.errors = 0
        self.first_errors: list[str] = []
        self.publish_errors = 0
        self.publish_start_ns = 0
        self._reset_counters()
        self.recovered_subs = 0
        self.unrecovered_subs = 0

    def _channel(self, room: int) -> str:
        return f"{self.target.channel_prefix}bench-{room}"

    def _reset_counters(self) -> None:
        self.received = 0
        self.latency_local = Reservoir(RESERVOIR_CAPACITY, seed=self.plan.index * 2 + 1)
        self.latency_cross = Reservoir(RESERVOIR_CAPACITY, seed=self.plan.index * 2 + 2)
        self.per_second = PerSecond()

    def note_error(self, text: str) -> None:
        self.errors += 1
        if len(self.first_errors) < 5:
            self.first_errors.append(text[:300])

    def on_delivery(self, payload: protocol.Payload, receiver_node: int, arrived_ns: int) -> None:
        self.received += 1
        latency_ms = (arrived_ns - payload.sent_ns) / 1e6
        if payload.node == receiver_node:
            self.latency_local.add(latency_ms)
        else:
            self.latency_cross.add(latency_ms)
        self.per_second.add((payload.sent_ns - self.publish_start_ns) // 1_000_000_000, latency_ms)

    def note_resubscribe(self, result: dict[str, Any]) -> None:
        if result.get("recovered"):
            self.recovered_subs += 1
        else:
            self.unrecovered_subs += 1

    # ---------------------------------------------------------------- phases
    async def _connect_one(self, conn: Conn, semaphore: asyncio.Semaphore, timings: list[float]) -> bool:
        url = self.target.ws_urls[conn.node]
        if conn.token is None:
            conn.token = protocol.mint_token(self.target.token_secret, f"bench-{conn.index}", now=time.time())
        token = conn.token
        source = source_address(conn.index, self.scenario.source_addresses)
        async with semaphore:
            started = time.perf_counter()
            try:
                await conn.open(url, source, token, timeout=30.0, connect_to=self.target.connect_to)
                await conn.subscribe(timeout=30.0)
            except (TimeoutError, OSError, protocol.ProtocolError, wsframes.WebSocketError) as exc:
                self.note_error(f"connect {conn.index}: {exc!r}")
                await conn.close()
                return False
            timings.append((time.perf_counter() - started) * 1000)
            return True

    async def _ramp(self, conns: list[Conn]) -> dict[str, Any]:
        """Connect and subscribe ``conns``; whatever has not finished by the scenario's connect timeout is
        abandoned and counted as failed, so a slow server still yields a (bounded) result."""
        semaphore = asyncio.Semaphore(self.scenario.connect_concurrency)
        timings: list[float] = []
        started = time.perf_counter()
        tasks = {asyncio.create_task(self._connect_one(c, semaphore, timings)): c for c in conns}
        done, pending = (
            await asyncio.wait(tasks, timeout=self.scenario.connect_timeout_s) if tasks else (set(), set())
        )
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=10)
            self.note_error(
                f"{len(pending)} connections still connecting after {self.scenario.connect_timeout_s} s"
            )
            for task in pending:
                await tasks[task].close()
        ok = sum(1 for task in done if task.result())
        return {
            "ok": ok,
            "failed": len(conns) - ok,
            "timed_out": len(pending),
            "wall_s": time.perf_counter() - started,
            "handshake_ms": Reservoir.from_values(timings),
        }

    def phase_ready(self) -> dict[str, Any]:
        """Answered once the process has imported everything, so the ramp is timed without start-up."""
        return {}

    async def phase_connect(self) -> dict[str, Any]:
        return await self._ramp(self.conns)

    def _publishers(self) -> list[Conn]:
        rooms = range(self.scenario.rooms)
        return [
            self.by_index[p] for p in (self.scenario.publisher_of(r) for r in rooms) if p in self.by_index
        ]

    def _data(self, conn: Conn, seq: int) -> dict[str, Any]:
        padding = protocol.padding_for(self.scenario.message_bytes)
        return protocol.encode_payload(protocol.Payload(monotonic_ns(), conn.node, conn.room, seq, padding))

    async def _publish(self, conn: Conn, seq: int, api: aiohttp.ClientSession | None, wait: bool) -> None:
        if api is not None:
            assert self.target.api_url is not None
            body = protocol.api_publish_body(conn.channel, self._data(conn, seq))
            headers = {"X-API-Key": self.target.api_key or "", "Content-Type": "application/json"}
            try:
                async with api.post(f"{self.target.api_url}/publish", data=body, headers=headers) as response:
                    reply = await response.json(content_type=None)
                    if response.status != 200 or "error" in reply:
                        raise protocol.ProtocolError(f"HTTP {response.status}: {str(reply)[:200]}")
            except (aiohttp.ClientError, protocol.ProtocolError, OSError) as exc:
                self.publish_errors += 1
                self.note_error(f"api publish: {exc!r}")
        elif wait:
            try:
                reply = await conn.request(
                    conn.wire.publish_command, conn.channel, self._data(conn, seq), timeout=30
                )
                protocol.reply_result(reply, "publish")
            except (protocol.ProtocolError, ConnectionError, TimeoutError) as exc:
                self.publish_errors += 1
                self.note_error(str(exc))
        elif not conn.closed:
            try:
                conn.publish_nowait(conn.channel, self._data(conn, seq))
            except ConnectionError as exc:
                self.publish_errors += 1
                self.note_error(f"publish on a closed connection: {exc!r}")

    async def phase_publish(self, start_ns: int, duration_s: float, drain_s: float) -> dict[str, Any]:
        self._reset_counters()
        self.publish_start_ns = start_ns
        self.publish_errors = 0
        rate = self.scenario.publish_rate_per_room
        rooms = self.scenario.rooms
        publishers = self._publishers()
        per_room = int(duration_s * rate)
        # (due time, room, seq): rooms are phase-shifted evenly over one period, so load is smooth.
        schedule: list[tuple[int, int, int]] = []
        for conn in publishers:
            phase_ns = int(conn.room / rooms / rate * 1e9)
            schedule.extend(
                (start_ns + phase_ns + int(k / rate * 1e9), conn.room, k) for k in range(per_room)
            )
        heapq.heapify(schedule)
        by_room = {c.room: c for c in publishers}
        api = self._api_session() if self.scenario.publish_via is PublishVia.API else None
        inflight: set[asyncio.Task[None]] = set()
        published, expected, worst_late_ms = 0, 0, 0.0
        try:
            while schedule:
                due, room, seq = heapq.heappop(schedule)
                delay = (due - monotonic_ns()) / 1e9
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    worst_late_ms = max(worst_late_ms, -delay * 1000)
                conn = by_room[room]
                if api is not None:
                    task = asyncio.create_task(self._publish(conn, seq, api, wait=False))
                    inflight.add(task)
                    task.add_done_callback(inflight.discard)
                else:
                    await self._publish(conn, seq, None, wait=False)
                published += 1
                expected += len(self.scenario.members_of(room))
            if inflight:
                await asyncio.wait(inflight, timeout=30)
            publish_end = monotonic_ns()
            await asyncio.sleep(drain_s)
        finally:
            if api is not None:
                await api.close()
        return {
            "published": published,
            "expected": expected,
            "publish_errors": self.publish_errors,
            "worst_publish_late_ms": worst_late_ms,
            "publish_end_ns": publish_end,
        }

    def phase_collect(self) -> dict[str, Any]:
        """What this shard received since the last publish phase began (sent after every shard drained)."""
        return {
            "received": self.received,
            "latency_local": self.latency_local,
            "latency_cross": self.latency_cross,
            "per_second": self.per_second,
            "open": sum(not c.closed for c in self.conns),
        }

    def _api_session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))

    def _stayers(self) -> set[int]:
        return {c.index for c in self._publishers()}

    async def phase_drop(self) -> dict[str, Any]:
        """Close every connection except the room publishers, remembering stream positions."""
        stayers = self._stayers()
        leaving = [c for c in self.conns if c.index not in stayers]
        without_position = sum(c.position is None for c in leaving)
        await asyncio.gather(*(c.close() for c in leaving))
        for conn in leaving:
            conn.gap_seqs.clear()
        return {"dropped": len(leaving), "without_position": without_position}

    async def phase_gap(self, messages: int) -> dict[str, Any]:
        """Publishers send ``messages`` numbered publications into their rooms while the others are away."""
        api = self._api_session() if self.scenario.publish_via is PublishVia.API else None
        try:
            for seq in range(GAP_SEQ_BASE, GAP_SEQ_BASE + messages):
                await asyncio.gather(*(self._publish(c, seq, api, wait=True) for c in self._publishers()))
        finally:
            if api is not None:
                await api.close()
        return {"gap_published": messages * len(self._publishers()), "publish_errors": self.publish_errors}

    async def phase_reconnect(self, messages: int) -> dict[str, Any]:
        stayers = self._stayers()
        returning = [c for c in self.conns if c.index not in stayers]
        self.recovered_subs = self.unrecovered_subs = 0
        outcome = await self._ramp(returning)
        await asyncio.sleep(1.0)  # live pushes that raced the recovery
        complete = sum(len(c.gap_seqs) == messages for c in returning if not c.closed)
        missing = sum(messages - len(c.gap_seqs) for c in returning)
        return {
            **outcome,
            "returning": len(returning),
            "recovered_subs": self.recovered_subs,
            "unrecovered_subs": self.unrecovered_subs,
            "complete": complete,
            "missing_messages": missing,
        }

    async def phase_close(self) -> dict[str, Any]:
        await asyncio.gather(*(c.close() for c in self.conns))
        await asyncio.sleep(0.2)  # let the close frames leave
        return {}

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            phase, arguments = await loop.run_in_executor(None, self.pipe.recv)
            handler = getattr(self, f"phase_{phase}")
            try:
                result = handler(**arguments)
                if asyncio.iscoroutine(result):
                    result = await result
            except Exception as exc:  # reported to the coordinator, which fails the run with it
                self.pipe.send({"crashed": f"{phase}: {exc!r}"})
                raise
            usage = resource.getrusage(resource.RUSAGE_SELF)
            result.update(
                errors=self.errors,
                first_errors=list(self.first_errors),
                client_cpu_s=usage.ru_utime + usage.ru_stime,
                client_rss_kib=procstat.sample([os.getpid()]).rss_kib,
            )
            self.pipe.send(result)
            if phase == "close":
                return


def shard_main(plan: ShardPlan, pipe: Connection) -> None:
    """Entry point of a load process (``multiprocessing`` spawn target)."""
    if plan.cpus:
        os.sched_setaffinity(0, plan.cpus)
    if plan.nice:
        os.nice(plan.nice)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import uvloop

        uvloop.run(Shard(plan, pipe).serve())
    except ImportError:  # pragma: no cover - uvloop is a worker dependency, present in the dev environment
        asyncio.run(Shard(plan, pipe).serve())
