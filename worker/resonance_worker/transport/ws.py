"""The WebSocket driver: moves frames between aiohttp and a ``Session``.

Reading, the session's operations and its timers run in the handler task;
what the session queued is written straight to the socket once per loop
iteration (no writer task). Everything decided about the protocol is in
``resonance_worker.domain.session``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import struct
import time
from collections.abc import Coroutine
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from resonance_worker.domain.codes import Disconnect, Disconnects
from resonance_worker.domain.encodings import UnsupportedEncodingError, negotiate, offered_subprotocols
from resonance_worker.domain.keys import SlotScope
from resonance_worker.domain.limits import LimitKind
from resonance_worker.domain.protocol import JSON_CODEC, Codec
from resonance_worker.domain.session import Session
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


def text_frame(payload: bytes) -> bytes:
    """One unmasked, unfragmented RFC 6455 text frame (as a server sends it) carrying ``payload``."""
    return ws_frame(0x81, payload)


def binary_frame(payload: bytes) -> bytes:
    """One unmasked, unfragmented RFC 6455 binary frame carrying ``payload``."""
    return ws_frame(0x82, payload)


def ws_frame(first: int, payload: bytes) -> bytes:
    """One unmasked RFC 6455 frame: ``first`` is its first byte (FIN and the opcode)."""
    size = len(payload)
    if size < 126:
        return _HEADER_SHORT(first, size) + payload
    if size < 65536:
        return _HEADER_MEDIUM(first, 126, size) + payload
    return _HEADER_LONG(first, 127, size) + payload


_HEADER_SHORT = struct.Struct("!BB").pack
_HEADER_MEDIUM = struct.Struct("!BBH").pack
_HEADER_LONG = struct.Struct("!BBQ").pack


class Connection:
    """One client WebSocket.

    Reading, the session's operations and its timers run in the handler task.
    There is no writer task: whatever the session queued is written straight to
    the transport, once per event-loop iteration (``Node`` collects the
    connections to flush), all queued replies and pushes in one frame, as
    Centrifugo batches them: a text frame separated by newlines (JSON) or a
    binary frame of length-delimited messages (protobuf). A task exists only
    while the socket is paused (the client reads slowly) and when closing.
    """

    __slots__ = (
        "_abort_handle",
        "_close_sent",
        "_closer",
        "_draining",
        "_first_byte",
        "_flush_queued",
        "_protocol",
        "_separator",
        "_tasks",
        "_timer_at",
        "_writer",
        "client_id",
        "ip",
        "node",
        "session",
        "trace_context",
        "transport",
        "user_counted",
        "ws",
    )

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
        self.node = node
        self.ws = ws
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
        # Flow control: the protocol says when the socket's buffer is full; the
        # request's payload writer waits until it drains (both public aiohttp API).
        self._protocol = request.protocol if request is not None else None
        self._writer = request.writer if request is not None else None
        self._timer_at: float | None = None  # the session's next deadline, as the node's timers hold it
        self._tasks: set[asyncio.Task[None]] | None = None
        self._flush_queued = False
        self._draining: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._abort_handle: asyncio.TimerHandle | None = None
        self._close_sent = False  # our close frame is out; the client's answer ends the read loop

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
        gone = self.ws.closed or transport is None or transport.is_closing()
        protocol = self._protocol
        if not (session.closed or gone) and protocol is not None and protocol.writing_paused:
            # The client reads slowly: frames wait in the session, whose queue
            # limit disconnects it (3008) if it falls too far behind.
            if self._draining is None:
                self._draining = self._spawn(self._drain())
            return
        frames = session.data_to_send()
        if frames and not self.ws.closed:
            if gone:
                session.close(Disconnects.WRITE_ERROR)
            else:
                assert transport is not None
                payload = frames[0] if len(frames) == 1 else self._separator.join(frames)
                transport.write(ws_frame(self._first_byte, payload))
        if session.closed and self._closer is None:
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

    def _abort(self) -> None:
        if not self.ws.closed and self.transport is not None:
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

    async def _run_effects(self) -> None:
        # In order, as Centrifuge: a publish after a subscribe in the same
        # frame sees the subscription. RPCs run beside, as they may be slow.
        while ops := self.session.effects():
            for op in ops:
                if op.runs_beside:
                    self._spawn(self.node.perform(self, op))
                else:
                    await self.node.perform(self, op)
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

    # -- closing and the read loop ---------------------------------------------------

    async def _close(self) -> None:
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
                    await self._run_effects()
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
            if self._timer_at is not None:
                self.node.timers.cancel(self, self._timer_at)
                self._timer_at = None
            if self._abort_handle is not None:
                self._abort_handle.cancel()
            for task in list(self._tasks or ()):
                task.cancel()
            await self.node.forget(self)

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


async def websocket_handler(request: web.Request) -> web.StreamResponse:
    """``GET /connection/websocket``: the Centrifuge protocol endpoint, in the encoding the handshake
    asks for (``resonance_worker.domain.encodings``)."""
    node = request.app[NODE]
    ip = client_ip(request, node.address_policy)
    if not node.address_policy.admits(ip):
        log.info("connection refused by IP policy", extra={"ip": ip})
        return web.json_response({"error": "address not allowed"}, status=403)
    origin = request.headers.get("Origin")
    if not node.origin_policy.admits(origin, request.host):
        log.info("connection refused: origin", extra={"ip": ip, "origin": (origin or "")[:200]})
        return web.json_response(
            {"error": f"origin {origin[:200]!r} is not allowed (allowed_origins)" if origin else "origin"},
            status=403,
        )
    if node.draining:
        return web.json_response({"error": "shutting down"}, status=503)
    offered = offered_subprotocols(request.headers.getall("Sec-WebSocket-Protocol", []))
    try:
        encoding = negotiate(offered, request.query)
    except UnsupportedEncodingError as exc:
        log.info("handshake refused: encoding", extra={"ip": ip, "error": str(exc)})
        return web.json_response({"error": str(exc)}, status=400)
    broken = node.counter.admit(ip)
    if broken == LimitKind.CONNECTIONS_TOTAL:
        node.limit_tripped(broken, ip=ip)
        return web.json_response({"error": "connection limit"}, status=503)
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
            node.limit_tripped(broken, ip=ip)
            node.metrics.disconnects.labels(code=str(Disconnects.CONNECTION_LIMIT.code)).inc()
            reason = Disconnects.CONNECTION_LIMIT
            await ws.close(code=reason.code, message=reason.reason.encode())
            return ws
        token = request.query.get("token") or None
        conn = Connection(node, ws, ip, token, request.transport, request, encoding.codec)
        if not await node.hold_slot(conn, SlotScope.ADDRESS, ip, node.settings.limits.max_connections_per_ip):
            # Over the per-address limit across the cluster: refused like one over it on this worker.
            node.limit_tripped(LimitKind.CONNECTIONS_PER_IP, ip=ip)
            node.metrics.disconnects.labels(code=str(Disconnects.CONNECTION_LIMIT.code)).inc()
            reason = Disconnects.CONNECTION_LIMIT
            await ws.close(code=reason.code, message=reason.reason.encode())
            return ws
        node.register(conn)
        await conn.serve()
    finally:
        if broken is None:
            node.counter.release(ip)
    return ws
