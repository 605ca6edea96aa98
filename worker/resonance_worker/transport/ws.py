"""The WebSocket driver: moves frames between a socket and a ``Session``.

:class:`Connection` is what both shells share (writing once per loop iteration, the session's
operations in order, its timers, the abort timer, the close reason); :func:`admit` is the
handshake's checks, shared too. This module is also the aiohttp shell (:class:`AiohttpConnection`,
:func:`websocket_handler`: a handler task per connection); the native one, which reads the upgrade
itself and needs no task while a connection is idle, is ``transport/wsnative.py``
(``settings.websocket_server``). Everything decided about the protocol is in
``resonance_worker.domain.session``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import struct
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from resonance_worker.domain.codes import Disconnect, Disconnects
from resonance_worker.domain.encodings import (
    Negotiated,
    UnsupportedEncodingError,
    negotiate,
    offered_subprotocols,
)
from resonance_worker.domain.keys import SlotScope
from resonance_worker.domain.limits import LimitKind
from resonance_worker.domain.operations import Op
from resonance_worker.domain.protocol import JSON_CODEC, Codec
from resonance_worker.domain.session import Session
from resonance_worker.domain.wsframes import frame
from resonance_worker.log import bind_connection
from resonance_worker.metrics import WorkerMetrics
from resonance_worker.tracing import Context
from resonance_worker.transport.http import client_ip
from resonance_worker.transport.keys import NODE
from resonance_worker.transport.node import Node

log = logging.getLogger("resonance.worker.ws")

ABORT_AFTER_SECONDS = 2.0
"""How long a closing connection may take to flush before its socket is aborted."""


class _Observer:
    """Turns session decisions into metrics and log lines (one per connection: slotted)."""

    __slots__ = ("client", "encoding", "ip", "metrics", "node")

    def __init__(self, node: Node, ip: str, client: str, encoding: str) -> None:
        self.metrics: WorkerMetrics = node.metrics
        self.node = node
        self.ip = ip
        self.client = client
        self.encoding = encoding

    def command(self, method: str) -> None:
        self.metrics.commands.labels(method=method).inc()

    def error(self, method: str, code: int) -> None:
        self.metrics.command_errors.labels(method=method, code=str(code)).inc()
        self.node.pain.error_reply(code)

    def limit(self, kind: str, client: str, user: str) -> None:
        self.node.limit_tripped(kind, client=client, user=user, ip=self.ip)

    def recovery(self, outcome: str) -> None:
        self.metrics.recoveries.labels(outcome=outcome).inc()

    def protocol_error(self, kind: str, detail: str) -> None:
        self.metrics.protocol_errors.labels(encoding=self.encoding, kind=kind).inc()
        level = logging.ERROR if kind == "unencodable" else logging.WARNING
        log.log(
            level,
            "protocol error",
            extra={
                "client": self.client,
                "ip": self.ip,
                "encoding": self.encoding,
                "kind": kind,
                "error": detail,
            },
        )


class Connection:
    """One client WebSocket, whichever shell serves it (the node calls ``wake``, ``flush``,
    ``disconnect`` and ``timer_due`` on it).

    There is no writer task: whatever the session queued is written straight to
    the transport, once per event-loop iteration (``Node`` collects the
    connections to flush), all queued replies and pushes in one frame, as
    Centrifugo batches them: a text frame separated by newlines (JSON) or a
    binary frame of length-delimited messages (protobuf).

    A shell supplies the socket's side: :class:`AiohttpConnection` (aiohttp's
    ``WebSocketResponse``, a handler task per connection) and
    ``transport.wsnative.NativeConnection`` (the connection's own protocol: no
    task while idle).
    """

    __slots__ = (
        "_abort_handle",
        "_close_sent",
        "_first_byte",
        "_flush_queued",
        "_separator",
        "_tasks",
        "_timer_at",
        "client_id",
        "ip",
        "node",
        "session",
        "trace_context",
        "transport",
        "user_counted",
    )

    def __init__(
        self,
        node: Node,
        ip: str,
        url_token: str | None,
        transport: asyncio.Transport | None,
        codec: Codec = JSON_CODEC,
    ) -> None:
        self.node = node
        self.transport = transport
        self.ip = ip
        self.client_id = secrets.token_hex(12)
        self.user_counted = False
        self.trace_context: Context | None = None
        self.session = Session(
            self.client_id,
            config=node.session_config,
            rules=node.rules,
            verifier=node.verifier,
            now=time.time(),
            url_token=url_token,
            observer=_Observer(node, ip, self.client_id, codec.name),
            codec=codec,
        )
        self._first_byte = 0x82 if codec.binary else 0x81
        self._separator = codec.separator
        self._timer_at: float | None = None  # the session's next deadline, as the node's timers hold it
        self._tasks: set[asyncio.Task[None]] | None = None
        self._flush_queued = False
        self._abort_handle: asyncio.TimerHandle | None = None
        self._close_sent = False  # our close frame is out; the client's answer ends the connection

    # -- the socket's side, supplied by each shell --------------------------------------

    def _ws_closed(self) -> bool:
        """Whether the WebSocket is closed (both close frames exchanged, or the socket is gone)."""
        raise NotImplementedError

    def _writing_paused(self) -> bool:
        """Whether the socket's buffer is full (the client reads slowly)."""
        raise NotImplementedError

    def _await_writable(self) -> None:
        """Wake this connection once the socket's buffer has drained."""
        raise NotImplementedError

    def _start_close(self) -> None:
        """The session has closed: send the close frame with its code, once."""
        raise NotImplementedError

    # -- called by the node and by the reader -------------------------------------

    def wake(self) -> None:
        """Something was queued or decided: flush it at the end of this loop iteration."""
        if not self._flush_queued:
            self._flush_queued = True
            self.node.schedule_flush(self)
        if self.session.closed and self._abort_handle is None:
            # A client that stopped reading never lets the close finish: cut it off.
            loop = asyncio.get_running_loop()
            self._abort_handle = loop.call_later(ABORT_AFTER_SECONDS, self._abort)

    def flush(self) -> None:
        """Write what the session queued (called by the node once per loop iteration)."""
        self._flush_queued = False
        session = self.session
        transport = self.transport
        closed = self._ws_closed()
        gone = closed or transport is None or transport.is_closing()
        if not (session.closed or gone) and self._writing_paused():
            # The client reads slowly: frames wait in the session, whose queue
            # limit disconnects it (3008) if it falls too far behind.
            self._await_writable()
            return
        frames = session.data_to_send()
        if frames and not closed:
            if gone:
                session.close(Disconnects.WRITE_ERROR)
            else:
                assert transport is not None
                payload = frames[0] if len(frames) == 1 else self._separator.join(frames)
                transport.write(frame(self._first_byte, payload))
        if session.closed:
            self._start_close()

    def _abort(self) -> None:
        if not self._ws_closed() and self.transport is not None:
            log.info("aborting unresponsive connection", extra={"client": self.client_id})
            self.transport.abort()

    def disconnect(self, reason: Disconnect) -> None:
        self.session.close(reason)
        self.wake()

    def pump(self) -> None:
        """Start the operations the session asked for that need no ordering."""
        for op in self.session.effects():
            self._spawn(self.node.perform(self, op))
        self.wake()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        if self._tasks is None:
            self._tasks = set()
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _perform(self, ops: list[Op]) -> None:
        # In order, as Centrifuge: a publish after a subscribe in the same
        # frame sees the subscription. RPCs run beside, as they may be slow.
        while ops:
            for op in ops:
                if op.runs_beside:
                    self._spawn(self.node.perform(self, op))
                else:
                    await self.node.perform(self, op)
            ops = self.session.effects()
        self._reschedule()
        self.wake()

    def _reschedule(self) -> None:
        deadline = self.session.next_deadline()
        if deadline == self._timer_at:
            return
        if self._timer_at is not None:
            self.node.timers.cancel(self, self._timer_at)
        self._timer_at = deadline
        if deadline is not None:
            self.node.timers.add(self, deadline)

    def timer_due(self) -> None:
        """The session's deadline has come (called by the node's timers)."""
        self._timer_at = None
        self.session.tick(time.time())
        self.pump()
        if not self.session.closed:
            self._reschedule()

    # -- closing ---------------------------------------------------------------------

    def _close_reason(self) -> Disconnect:
        """Why the session closed, counted and logged (unless the client simply left)."""
        reason = self.session.close_reason or Disconnects.CONNECTION_CLOSED
        if reason.code != Disconnects.CONNECTION_CLOSED.code:
            self.node.metrics.disconnects.labels(code=str(reason.code)).inc()
            log.info(
                "disconnecting client",
                extra={
                    "client": self.client_id,
                    "user": self.session.user,
                    "code": reason.code,
                    "reason": reason.reason,
                },
            )
        return reason

    def _stop_timers(self) -> None:
        """The connection has ended: its deadline, its abort timer and its tasks go."""
        if self._timer_at is not None:
            self.node.timers.cancel(self, self._timer_at)
            self._timer_at = None
        if self._abort_handle is not None:
            self._abort_handle.cancel()
        current = asyncio.current_task()
        for task in list(self._tasks or ()):
            if task is not current:
                task.cancel()

    def _transport_error(self, error: object) -> None:
        code = getattr(error, "code", None)
        if code == WSCloseCode.MESSAGE_TOO_BIG:
            self.node.limit_tripped(
                LimitKind.MESSAGE_SIZE, client=self.client_id, user=self.session.user, ip=self.ip
            )
            self.session.close(Disconnects.MESSAGE_TOO_BIG)
        else:
            log.info("websocket error", extra={"client": self.client_id, "error": str(error)})
            self.session.close(Disconnects.BAD_REQUEST)


class AiohttpConnection(Connection):
    """A connection served by aiohttp's ``WebSocketResponse`` (``websocket_server=aiohttp``, and every
    upgrade the native listener hands over). Reading, the session's operations and its timers run in
    the handler task; a task exists besides only while the socket is paused and when closing."""

    __slots__ = ("_closer", "_draining", "_protocol", "_writer", "ws")

    def __init__(
        self,
        node: Node,
        ws: web.WebSocketResponse,
        ip: str,
        url_token: str | None,
        transport: asyncio.Transport | None = None,
        request: web.Request | None = None,
        codec: Codec = JSON_CODEC,
    ) -> None:
        super().__init__(node, ip, url_token, transport, codec)
        self.ws = ws
        # Flow control: the protocol says when the socket's buffer is full; the
        # request's payload writer waits until it drains (both public aiohttp API).
        self._protocol = request.protocol if request is not None else None
        self._writer = request.writer if request is not None else None
        self._draining: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None

    def _ws_closed(self) -> bool:
        return self.ws.closed

    def _writing_paused(self) -> bool:
        return self._protocol is not None and self._protocol.writing_paused

    def _await_writable(self) -> None:
        if self._draining is None:
            self._draining = self._spawn(self._drain())

    def _start_close(self) -> None:
        if self._closer is None:
            self._closer = self._spawn(self._close())

    async def _drain(self) -> None:
        assert self._writer is not None
        try:
            await self._writer.drain()
        except ConnectionError:
            self.session.close(Disconnects.WRITE_ERROR)
        finally:
            self._draining = None
        self.wake()

    async def _close(self) -> None:
        reason = self._close_reason()
        if self.ws.closed or self._close_sent:
            return
        # The close frame goes out and the connection stays open until the client answers with its own
        # (RFC 6455 7.1.1; the read loop ends on it) or the abort timer cuts it off. Closing the socket at
        # once, as aiohttp's close() does while a read is pending, lets a client that writes meanwhile
        # (its close answer, a pong) get a reset that discards the unread close frame: centrifuge-java
        # then sees "transport closed" instead of the code.
        self._close_sent = True
        try:
            await self.ws.send_frame(struct.pack("!H", reason.code) + reason.reason.encode(), WSMsgType.CLOSE)
        except (ConnectionError, RuntimeError):  # the client is gone already
            if self.transport is not None:
                self.transport.close()

    async def serve(self) -> None:
        """Run until the client goes away or the session closes the connection."""
        bind_connection(self.client_id)  # this task's log lines, and its operations', name the client
        self._reschedule()
        try:
            async for msg in self.ws:
                if self.session.closed:
                    continue  # closing: what the client sends before its close frame is dropped
                if msg.type is WSMsgType.TEXT or msg.type is WSMsgType.BINARY:
                    self.session.receive_data(msg.data, time.time())
                    await self._perform(self.session.effects())
                elif msg.type is WSMsgType.ERROR:
                    self._transport_error(msg.data)
                    break
        finally:
            self.flush()  # what is queued, and the close frame with its code if the session closed
            if self._closer is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(self._closer), timeout=5.0)
                except (TimeoutError, asyncio.CancelledError):
                    self._closer.cancel()
            if self._close_sent:
                if self.transport is not None:
                    self.transport.close()  # both close frames exchanged (or the client is gone)
            elif not self.ws.closed:
                await self.ws.close()  # the client closed first: answer it
            self._stop_timers()
            await self.node.forget(self)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A handshake refused before the upgrade: the HTTP ``status`` and the body's ``error``."""

    status: int
    error: str


@dataclass(frozen=True, slots=True)
class Admitted:
    """A handshake let through: the encoding, and the limit it broke if any (``CONNECTIONS_TOTAL``
    never gets here; another one is answered after the upgrade with a close 3504). Unless a limit
    was broken, the connection holds a place in ``node.counter`` until it ends."""

    encoding: Negotiated
    broken: str | None


def admit(
    node: Node,
    ip: str,
    origin: str | None,
    host: str,
    subprotocol_headers: list[str],
    query: Mapping[str, str],
) -> Refusal | Admitted:
    """The checks of a WebSocket handshake, in order, shared by both shells: IP policy, origin,
    draining, encoding, connection counter."""
    if not node.address_policy.admits(ip):
        log.info("connection refused by IP policy", extra={"ip": ip})
        return Refusal(403, "address not allowed")
    if not node.origin_policy.admits(origin, host):
        log.info("connection refused: origin", extra={"ip": ip, "origin": (origin or "")[:200]})
        return Refusal(
            403, f"origin {origin[:200]!r} is not allowed (allowed_origins)" if origin else "origin"
        )
    if node.draining:
        return Refusal(503, "shutting down")
    try:
        encoding = negotiate(offered_subprotocols(subprotocol_headers), query)
    except UnsupportedEncodingError as exc:
        log.info("handshake refused: encoding", extra={"ip": ip, "error": str(exc)})
        return Refusal(400, str(exc))
    broken = node.counter.admit(ip)
    if broken == LimitKind.CONNECTIONS_TOTAL:
        node.limit_tripped(broken, ip=ip)
        return Refusal(503, "connection limit")
    return Admitted(encoding, broken)


def refuse_over_limit(node: Node, ip: str, kind: str) -> Disconnect:
    """A connection over a per-address or per-user limit, counted: the close it gets after the upgrade."""
    node.limit_tripped(kind, ip=ip)
    node.metrics.disconnects.labels(code=str(Disconnects.CONNECTION_LIMIT.code)).inc()
    return Disconnects.CONNECTION_LIMIT


async def websocket_handler(request: web.Request) -> web.StreamResponse:
    """``GET /connection/websocket``: the Centrifuge protocol endpoint, in the encoding the handshake
    asks for (``resonance_worker.domain.encodings``)."""
    node = request.app[NODE]
    ip = client_ip(request, node.address_policy)
    verdict = admit(
        node,
        ip,
        request.headers.get("Origin"),
        request.host,
        request.headers.getall("Sec-WebSocket-Protocol", []),
        request.query,
    )
    if isinstance(verdict, Refusal):
        return web.json_response({"error": verdict.error}, status=verdict.status)
    encoding, broken = verdict.encoding, verdict.broken
    ws = web.WebSocketResponse(
        max_msg_size=node.settings.limits.max_message_bytes,
        compress=False,  # permessage-deflate costs ~90 KB per connection and 3.5x fan-out CPU
        autoping=True,
        autoclose=False,  # a client's close frame ends the read loop; ``serve`` answers it or ends the socket
        protocols=(encoding.subprotocol,) if encoding.subprotocol else (),
    )
    try:
        await ws.prepare(request)
        if broken is not None:
            reason = refuse_over_limit(node, ip, broken)
            await ws.close(code=reason.code, message=reason.reason.encode())
            return ws
        token = request.query.get("token") or None
        conn = AiohttpConnection(node, ws, ip, token, request.transport, request, encoding.codec)
        if not await node.hold_slot(conn, SlotScope.ADDRESS, ip, node.settings.limits.max_connections_per_ip):
            # Over the per-address limit across the cluster: refused like one over it on this worker.
            reason = refuse_over_limit(node, ip, LimitKind.CONNECTIONS_PER_IP)
            await ws.close(code=reason.code, message=reason.reason.encode())
            return ws
        node.register(conn)
        await conn.serve()
    finally:
        if broken is None:
            node.counter.release(ip)
    return ws
