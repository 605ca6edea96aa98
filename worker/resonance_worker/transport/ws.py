"""The WebSocket driver: moves frames between aiohttp and a ``Session``.

Reading, the session's operations and its timers run in the handler task;
a writer task sends what the session queued. Everything decided about the
protocol is in ``resonance_worker.domain.session``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time

from aiohttp import WSCloseCode, WSMsgType, web

from resonance_worker.domain.codes import Disconnect, Disconnects
from resonance_worker.domain.limits import LimitKind
from resonance_worker.domain.netpolicy import AddressPolicy
from resonance_worker.domain.session import RpcOp, Session
from resonance_worker.metrics import WorkerMetrics
from resonance_worker.transport.node import Node

log = logging.getLogger("resonance.worker.ws")

ABORT_AFTER_SECONDS = 2.0
"""How long a closing connection may take to flush before its socket is aborted."""


class _Observer:
    """Turns session decisions into metrics and log lines."""

    def __init__(self, node: Node, ip: str) -> None:
        self.metrics: WorkerMetrics = node.metrics
        self.node = node
        self.ip = ip

    def command(self, method: str) -> None:
        self.metrics.commands.labels(method=method).inc()

    def error(self, method: str, code: int) -> None:
        self.metrics.command_errors.labels(method=method, code=str(code)).inc()
        self.node.pain.error_reply(code)

    def limit(self, kind: str, client: str, user: str) -> None:
        self.node.limit_tripped(kind, client=client, user=user, ip=self.ip)

    def recovery(self, outcome: str) -> None:
        self.metrics.recoveries.labels(outcome=outcome).inc()


class Connection:
    """One client WebSocket."""

    def __init__(
        self,
        node: Node,
        ws: web.WebSocketResponse,
        ip: str,
        url_token: str | None,
        transport: asyncio.Transport | None = None,
    ) -> None:
        self.node = node
        self.ws = ws
        self.transport = transport
        self.ip = ip
        self.client_id = secrets.token_hex(12)
        self.user_counted = False
        self.session = Session(
            self.client_id,
            config=node.session_config,
            rules=node.rules,
            verifier=node.verifier,
            now=time.time(),
            url_token=url_token,
            observer=_Observer(node, ip),
        )
        self._wake = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._abort_handle: asyncio.TimerHandle | None = None

    # -- called by the node and by the reader -------------------------------------

    def wake(self) -> None:
        """Something was queued or decided: let the writer run."""
        self._wake.set()
        if self.session.closed and self._abort_handle is None:
            # A client that stopped reading blocks the writer forever: cut it off.
            loop = asyncio.get_running_loop()
            self._abort_handle = loop.call_later(ABORT_AFTER_SECONDS, self._abort)

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

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[call-overload]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_effects(self) -> None:
        # In order, as Centrifuge: a publish after a subscribe in the same
        # frame sees the subscription. RPCs run beside, as they may be slow.
        while ops := self.session.effects():
            for op in ops:
                if isinstance(op, RpcOp):
                    self._spawn(self.node.perform(self, op))
                else:
                    await self.node.perform(self, op)
        self._reschedule()
        self.wake()

    def _reschedule(self) -> None:
        deadline = self.session.next_deadline()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(max(0.0, deadline - time.time()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.session.tick(time.time())
        self.pump()
        if not self.session.closed:
            self._reschedule()

    # -- the two loops ------------------------------------------------------------------

    async def _writer(self) -> None:
        ws = self.ws
        while True:
            await self._wake.wait()
            self._wake.clear()
            frames = self.session.data_to_send()
            if frames and not ws.closed:
                data = frames[0] if len(frames) == 1 else b"\n".join(frames)
                try:
                    await ws.send_frame(data, WSMsgType.TEXT)
                except (ConnectionResetError, RuntimeError):
                    self.session.close(Disconnects.WRITE_ERROR)
            if self.session.closed:
                await self._close()
                return

    async def _close(self) -> None:
        if self._closing:
            return
        self._closing = True
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
        if not self.ws.closed:
            await self.ws.close(code=reason.code, message=reason.reason.encode())

    async def serve(self) -> None:
        """Run until the client goes away or the session closes the connection."""
        writer = asyncio.ensure_future(self._writer())
        self._reschedule()
        try:
            async for msg in self.ws:
                if msg.type is WSMsgType.TEXT:
                    self.session.receive_data(msg.data, time.time())
                    await self._run_effects()
                elif msg.type is WSMsgType.BINARY:
                    self.session.receive_binary()
                    self.wake()
                elif msg.type is WSMsgType.ERROR:
                    self._transport_error(msg.data)
                    break
                if self.session.closed:
                    break
        finally:
            self.wake()
            try:
                await asyncio.wait_for(asyncio.shield(writer), timeout=5.0)
            except (TimeoutError, asyncio.CancelledError):
                writer.cancel()
            if not self.ws.closed:
                await self.ws.close()
            if self._timer is not None:
                self._timer.cancel()
            if self._abort_handle is not None:
                self._abort_handle.cancel()
            for task in list(self._tasks):
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


def client_ip(request: web.Request, policy: AddressPolicy) -> str:
    """The client's address: the TCP peer, or what a trusted proxy forwarded (see ``netpolicy``)."""
    peer = request.remote or ""
    forwarded = request.headers.get(policy.header) if policy.header else None
    return policy.client_address(peer, forwarded)


async def websocket_handler(request: web.Request) -> web.StreamResponse:
    """``GET /connection/websocket``: the Centrifuge protocol endpoint."""
    from resonance_worker.transport.app import NODE  # the app module imports this one

    node = request.app[NODE]
    ip = client_ip(request, node.address_policy)
    if not node.address_policy.admits(ip):
        log.info("connection refused by IP policy", extra={"ip": ip})
        return web.json_response({"error": "address not allowed"}, status=403)
    if node.draining:
        return web.json_response({"error": "shutting down"}, status=503)
    broken = node.counter.admit(ip)
    if broken == LimitKind.CONNECTIONS_TOTAL:
        node.limit_tripped(broken, ip=ip)
        return web.json_response({"error": "connection limit"}, status=503)
    ws = web.WebSocketResponse(
        max_msg_size=node.settings.limits.max_message_bytes,
        compress=False,  # permessage-deflate costs ~90 KB per connection and 3.5x fan-out CPU
        autoping=True,
    )
    try:
        await ws.prepare(request)
        if broken is not None:
            node.limit_tripped(broken, ip=ip)
            node.metrics.disconnects.labels(code=str(Disconnects.CONNECTION_LIMIT.code)).inc()
            reason = Disconnects.CONNECTION_LIMIT
            await ws.close(code=reason.code, message=reason.reason.encode())
            return ws
        conn = Connection(node, ws, ip, request.query.get("token") or None, request.transport)
        node.register(conn)
        await conn.serve()
    finally:
        if broken is None:
            node.counter.release(ip)
    return ws
