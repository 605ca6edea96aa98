"""The native WebSocket shell (``settings.websocket_server = native``): the listener reads each
connection's request head itself and serves a WebSocket upgrade of ``/connection/websocket``
without aiohttp; everything else is aiohttp's, unchanged.

* :class:`UpgradeReader` is each connection's first protocol (behind the PROXY protocol reader when
  that is on). It reads the request head (``domain/wshandshake.py``). A valid upgrade of the
  endpoint gets the same checks and answers as the aiohttp shell (``ws.admit``: IP policy with
  forwarded-for from trusted proxies, origin, draining 503, encoding 400, connection counter 503 or
  a close 3504 after the upgrade, the per-address slot), then a 101 written here. Anything else -
  another path, HTTP/1.0, a malformed or non-upgrade request - is handed to aiohttp's protocol
  (``transport.set_protocol``) with every byte read so far.
* :class:`NativeConnection` is then the connection's protocol. ``data_received`` feeds the frame
  reader (``domain/wsframes.py``) and the session; no task exists while a connection is idle. The
  session's ordered operations run in a task only while there are any; frames that arrive
  meanwhile wait in order behind them (reading pauses when many wait). Pings are answered at once,
  flow control is ``pause_writing``/``resume_writing``, and the close handshake, the abort timer
  and ``node.forget`` are as the aiohttp shell's.

What a connection keeps: this object (slotted), its session, its frame reader, a context for its
log lines - no request, no handler task, no deques (docs/benchmarks.md, idle memory).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, cast
from urllib.parse import parse_qsl

from aiohttp import web
from multidict import MultiDict

from resonance_worker.domain.codes import Disconnects
from resonance_worker.domain.keys import SlotScope
from resonance_worker.domain.limits import LimitKind
from resonance_worker.domain.operations import Op
from resonance_worker.domain.protocol import Codec
from resonance_worker.domain.wsframes import (
    Close,
    FrameError,
    FrameReader,
    Message,
    Ping,
    close_frame,
    pong_frame,
)
from resonance_worker.domain.wshandshake import (
    NOT_OURS,
    Upgrade,
    json_refusal,
    read_head,
    switching_protocols,
)
from resonance_worker.living.core import Living
from resonance_worker.living.origin import PainOrigin, charge_to
from resonance_worker.log import bind_connection
from resonance_worker.transport.node import Node
from resonance_worker.transport.proxyproto import hand_over
from resonance_worker.transport.ws import Admitted, Connection, Refusal, admit, refuse_over_limit

log = logging.getLogger("resonance.worker.ws")

PATH = "/connection/websocket"

MAX_WAITING_MESSAGES = 64
"""Messages waiting behind a connection's running operations before reading pauses."""

_END = object()
"""In the queue of waiting messages: the client closed (or left) here."""

_forgetting: set[asyncio.Task[None]] = set()
"""Ended connections whose clean-up (``node.forget``) is running: held so none is collected."""


class UpgradeReader(asyncio.Protocol):
    """One connection until its request head is read: served natively, or handed to aiohttp."""

    __slots__ = ("_buffer", "_living", "_make_protocol", "_node", "_transport")

    def __init__(
        self, make_protocol: Callable[[], asyncio.Protocol], node: Node, living: Living | None
    ) -> None:
        self._make_protocol = make_protocol
        self._node = node
        self._living = living
        self._transport: asyncio.Transport | None = None
        self._buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        self._buffer += data
        verdict = read_head(self._buffer, PATH)
        if verdict is None:
            return
        received, self._buffer = self._buffer, b""
        if verdict is NOT_OURS:
            hand_over(transport, self._make_protocol(), received)
            return
        assert isinstance(verdict, Upgrade)
        self._upgrade(transport, verdict, received[verdict.consumed :])

    def eof_received(self) -> bool | None:
        transport = self._transport
        if transport is not None and self._buffer:  # half a request: aiohttp answers it as it would
            received, self._buffer = self._buffer, b""
            protocol = self._make_protocol()
            hand_over(transport, protocol, received)
            return protocol.eof_received()
        return None

    def connection_lost(self, exc: BaseException | None) -> None:
        self._buffer = b""

    def _upgrade(self, transport: asyncio.Transport, upgrade: Upgrade, rest: bytes) -> None:
        node = self._node
        peer = transport.get_extra_info("peername")
        policy = node.address_policy
        forwarded = upgrade.header(policy.header.lower()) if policy.header else None
        ip = policy.client_address(peer[0] if peer else "", forwarded)
        # The connection's own context: its log lines name it, and with the living core on, whatever
        # it does that hurts is charged to it (as the living middleware does for the aiohttp shell).
        context = contextvars.copy_context()
        if self._living is not None:
            retry = self._living.thyroid.shed_retry_after(ip)
            if retry is not None:
                transport.write(json_refusal(503, "overloaded", retry_after=retry))
                transport.close()
                return
            context.run(charge_to, PainOrigin(ip, transport))
        query = MultiDict(parse_qsl(upgrade.query, keep_blank_values=True))
        verdict = context.run(
            admit,
            node,
            ip,
            upgrade.header("origin"),
            upgrade.header("host") or "",
            upgrade.header_all("sec-websocket-protocol"),
            query,
        )
        if isinstance(verdict, Refusal):
            transport.write(json_refusal(verdict.status, verdict.error))
            transport.close()
            return
        conn = NativeConnection(node, ip, query.get("token") or None, transport, verdict, context)
        transport.set_protocol(conn)
        transport.write(switching_protocols(upgrade.key, verdict.encoding.subprotocol))
        context.run(conn.start, verdict.broken, rest)


class NativeConnection(Connection, asyncio.Protocol):
    """A connection served natively: it is its socket's protocol (see the module docstring)."""

    __slots__ = (
        "_closing",
        "_context",
        "_counted",
        "_ended",
        "_lost",
        "_paused",
        "_reader",
        "_reading_paused",
        "_registered",
        "_runner",
        "_waiting",
    )

    def __init__(
        self,
        node: Node,
        ip: str,
        url_token: str | None,
        transport: asyncio.Transport,
        admitted: Admitted,
        context: contextvars.Context,
    ) -> None:
        codec: Codec = admitted.encoding.codec
        super().__init__(node, ip, url_token, transport, codec)
        self._reader: FrameReader | None = FrameReader(node.settings.limits.max_message_bytes)
        self._counted = admitted.broken is None  # holds a place in node.counter until it ends
        self._registered = False
        self._closing = False  # the close (its code counted and logged) has begun
        self._ended = False
        self._lost = False
        self._paused = False  # writing: the socket's buffer is full
        self._reading_paused = False  # too many messages wait behind running operations
        self._runner: asyncio.Task[None] | None = None
        self._waiting: deque[object] | None = None  # messages (and _END) behind the running operations
        self._context = context  # everything it does runs in it (``UpgradeReader._upgrade``)
        context.run(bind_connection, self.client_id)

    # -- starting ------------------------------------------------------------------------

    def start(self, broken: str | None, rest: bytes) -> None:
        """The 101 is written: take the connection in (``broken``: the limit ``admit`` found broken,
        refused with a close 3504; ``rest``: frames sent right after the head)."""
        if broken is not None:
            self._refuse(broken)
        else:
            limit = self.node.settings.limits.max_connections_per_ip
            if limit and self.ip:
                self._runner = self._task(self._take_slot(limit))
            else:
                self._register()
        if rest and self._reader is not None:  # already in the connection's context
            self._received(rest)

    def _refuse(self, kind: str) -> None:
        reason = refuse_over_limit(self.node, self.ip, kind)  # counted here, as the aiohttp shell does
        self._closing = True
        self._close_sent = True
        self.session.close(reason)
        self._write(close_frame(reason.code, reason.reason))
        self.wake()  # the abort timer, should the client never answer

    async def _take_slot(self, limit: int) -> None:
        held = await self.node.hold_slot(self, SlotScope.ADDRESS, self.ip, limit)
        if self._ended:
            return
        if not held:
            # Over the per-address limit across the cluster: refused like one over it on this worker.
            self._refuse(LimitKind.CONNECTIONS_PER_IP)
        else:
            self._register()
        await self._run(None)

    def _register(self) -> None:
        self._registered = True
        self.node.register(self)
        self._reschedule()

    # -- the socket's side ------------------------------------------------------------------

    def _ws_closed(self) -> bool:
        return self._lost or self._ended

    def _writing_paused(self) -> bool:
        return self._paused

    def _await_writable(self) -> None:
        pass  # resume_writing wakes the connection

    def _start_close(self) -> None:
        if self._closing:
            return
        self._closing = True
        reason = self._close_reason()
        if not (self._close_sent or self._lost):
            self._close_sent = True
            self._write(close_frame(reason.code, reason.reason))

    def _write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def _task(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        # A copy each, as a task started from the aiohttp shell's handler task gets: what one operation
        # sets (its tracing span) is not seen by the others running beside it.
        task = asyncio.get_running_loop().create_task(coro, context=self._context.copy())
        if self._tasks is None:
            self._tasks = set()
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        return self._task(coro)

    # -- asyncio.Protocol --------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._reader is not None:  # else: after the client's close frame or an error, nothing is read
            self._context.run(self._received, data)

    def _received(self, data: bytes) -> None:
        reader = self._reader
        assert reader is not None
        try:
            events = reader.feed(data)
        except FrameError as error:
            self._frame_error(error)
            return
        for event in events:
            if type(event) is Message:
                self._message(event.data)
            elif type(event) is Ping:
                self._write(pong_frame(event.payload))
            elif type(event) is Close:
                self._reader = None
                self._then_end()
                return
            # a Pong: nothing to do (the protocol's own pings are commands)

    def _message(self, data: str | bytes) -> None:
        if self._runner is not None:
            waiting = self._waiting
            if waiting is None:
                waiting = self._waiting = deque()
            waiting.append(data)
            if (
                len(waiting) >= MAX_WAITING_MESSAGES
                and not self._reading_paused
                and self.transport is not None
            ):
                self._reading_paused = True
                self.transport.pause_reading()
            return
        session = self.session
        if session.closed:
            return  # closing: what the client sends before its close frame is dropped
        session.receive_data(data, time.time())
        ops = session.effects()
        if ops:
            self._runner = self._task(self._run(ops))
        else:
            self._reschedule()
            self.wake()

    async def _run(self, ops: list[Op] | None) -> None:
        """Perform ``ops``, then go through the messages that arrived meanwhile, in order; then no task
        is left."""
        try:
            if ops is not None:
                await self._perform(ops)
            while self._waiting:
                item = self._waiting.popleft()
                if item is _END:
                    break
                if self.session.closed:
                    continue  # closing: dropped, as the client's frames before its close frame are
                assert isinstance(item, str | bytes)
                self.session.receive_data(item, time.time())
                await self._perform(self.session.effects())
        except Exception:
            log.exception("connection failed", extra={"client": self.client_id})
            self.session.close(Disconnects.SERVER_ERROR)
            self.wake()
        finally:
            ended = self._lost or (self._waiting is not None and _END in self._waiting)
            self._runner = None
            self._waiting = None
            if ended:
                self._end()
            elif self._reading_paused and self.transport is not None:
                self._reading_paused = False
                self.transport.resume_reading()

    def _then_end(self) -> None:
        """The client closed, or left: end once the operations before it are done."""
        if self._runner is not None:
            if self._waiting is None:
                self._waiting = deque()
            self._waiting.append(_END)
        else:
            self._end()

    def _frame_error(self, error: FrameError) -> None:
        # As aiohttp: the close frame names the error's code (1002, 1007, 1009); then the session
        # closes (1009 is counted as the message-size limit) and what the client sends is ignored.
        self._reader = None
        if not self._close_sent:
            self._close_sent = True
            self._write(close_frame(error.code, str(error)))
        self._transport_error(error)
        self.wake()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self.wake()

    def eof_received(self) -> bool | None:
        return None  # the transport closes; connection_lost ends the connection

    def connection_lost(self, exc: BaseException | None) -> None:
        self._lost = True
        self._reader = None
        self._context.run(self._then_end)

    # -- the end -------------------------------------------------------------------------------

    def _end(self) -> None:
        if self._ended:
            return
        self.flush()  # what is queued, and the close frame with its code if the session closed
        self._ended = True
        transport = self.transport
        if transport is not None and not self._lost:
            if not self._close_sent:
                transport.write(close_frame(1000))  # the client closed first: answer it
                self._close_sent = True
            transport.close()  # both close frames exchanged (or the client is gone)
        self._reader = None
        self._stop_timers()
        if self._registered or self._counted:
            task = asyncio.get_running_loop().create_task(self._forget(), context=self._context.copy())
            _forgetting.add(task)
            task.add_done_callback(_forgetting.discard)

    async def _forget(self) -> None:
        try:
            if self._registered:
                await self.node.forget(self)
        finally:
            if self._counted:
                self.node.counter.release(self.ip)


def native_protocol_factory(
    server: web.Server, node: Node, living: Living | None
) -> Callable[[], asyncio.Protocol]:
    """What a listener makes for each new connection when the native shell is on."""
    return lambda: UpgradeReader(server, node, living)


class NativeSite(web.BaseSite):
    """``web.TCPSite`` whose connections go to an :class:`UpgradeReader` first."""

    __slots__ = ("_host", "_living", "_node", "_port", "_reuse_port")

    def __init__(
        self,
        runner: web.BaseRunner,
        node: Node,
        living: Living | None,
        host: str,
        port: int,
        *,
        backlog: int = 128,
        reuse_port: bool = False,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._node = node
        self._living = living
        self._host = host
        self._port = port
        self._reuse_port = reuse_port

    @property
    def name(self) -> str:
        return f"http://{self._host or '0.0.0.0'}:{self._port} (native WebSocket)"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            native_protocol_factory(server, self._node, self._living),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_port=self._reuse_port or None,
        )
