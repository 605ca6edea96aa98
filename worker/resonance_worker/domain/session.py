"""One client connection as a sans-I/O state machine (like ``websockets``'
``protocol.py``).

Inputs: ``receive_data(text, now)`` for each WebSocket text frame,
``tick(now)`` when ``next_deadline()`` is reached, ``deliver(...)`` for pushes
fanned out by the node, and the results of the operations it asked for.
Outputs: ``data_to_send()`` (text frames), ``effects()`` (operations on the
engine or the application for the shell to perform - each one is answered by
calling ``resolve``/``reject``/``subscribed``/``connected`` with its result)
and ``close_reason`` (set once the session wants the connection closed).

The decisions - authentication, permissions, limits, recovery and
positioning, ping/pong, expiry - are all here; the shell only moves bytes and
awaits the engine.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from resonance_worker.domain import tenancy
from resonance_worker.domain.auth import (
    ConnectClaims,
    InvalidTokenError,
    TokenExpiredError,
    TokenVerifier,
)
from resonance_worker.domain.channels import ChannelRules, NamespaceOptions
from resonance_worker.domain.codes import Disconnect, Disconnects, ErrorCode, UnsubscribeCode
from resonance_worker.domain.limits import LimitKind, TokenBucket
from resonance_worker.domain.protocol import (
    PING_FRAME,
    Command,
    ProtocolViolationError,
    PublicationLike,
    encode_error,
    encode_reply,
    encode_unsubscribe_push,
    parse_frame,
    publication_json,
    raw_json,
)

REJECT_UNRECOVERED_FLAG = 2
"""SubscribeRequest.flag bit: answer 112 instead of ``recovered: false``."""


class SessionState(enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSED = "closed"


@dataclass(frozen=True)
class SessionConfig:
    """Per-connection settings (see ``WorkerSettings`` for their documentation)."""

    ping_interval: float = 25.0
    pong_timeout: float = 8.0
    connect_timeout: float = 10.0
    expired_close_delay: float = 25.0
    max_channels: int = 128
    command_rate: float = 50.0
    command_burst: int = 100
    max_rate_violations: int = 100
    queue_max_bytes: int = 1 << 20
    history_max_limit: int = 1000
    presence_ttl: float = 60.0
    presence_update_interval: float = 25.0
    allow_anonymous: bool = False
    personal_channel: bool = True
    tenant_isolation: bool = False
    version: str = ""
    node: str = ""


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """The protocol's ClientInfo of this connection (in a channel)."""

    user: str
    client: str
    conn_info: bytes | None = None
    chan_info: bytes | None = None


class SessionObserver(Protocol):
    """Receives what the session decides, for metrics and logs (no I/O in the domain)."""

    def command(self, method: str) -> None: ...
    def error(self, method: str, code: int) -> None: ...
    def limit(self, kind: str, client: str, user: str) -> None: ...
    def recovery(self, outcome: str) -> None: ...


class _NullObserver:
    def command(self, method: str) -> None:
        return None

    def error(self, method: str, code: int) -> None:
        return None

    def limit(self, kind: str, client: str, user: str) -> None:
        return None

    def recovery(self, outcome: str) -> None:
        return None


# -- operations for the shell ---------------------------------------------------


@dataclass(eq=False)
class Op:
    """An operation the shell performs for the session, then answers."""

    cmd_id: int

    @property
    def method(self) -> str:
        return _OP_METHODS[type(self)]


@dataclass(eq=False)
class SubscribeOp(Op):
    """Register a local subscriber (buffering starts now), add presence, read
    the stream position (and the publications after ``since`` when recovering),
    then call ``Session.subscribed`` - or ``reject`` on failure."""

    channel: str
    options: NamespaceOptions
    info: PeerInfo
    since: tuple[int, str] | None = None  # (offset, epoch) to recover from
    positioned: bool = False
    recoverable: bool = False
    server_side: bool = False
    reject_unrecovered: bool = False
    expire_at: int | None = None


@dataclass(eq=False)
class ConnectOp(Op):
    """Count the user's connection (limit), run the server-side subscriptions,
    then call ``Session.connected``."""

    user: str
    subscriptions: list[SubscribeOp] = field(default_factory=list)


@dataclass(eq=False)
class UnsubscribeOp(Op):
    """Forget a subscription: remove the local subscriber and presence, send a
    leave if the namespace has join/leave. Needs no answer."""

    channel: str
    options: NamespaceOptions
    info: PeerInfo


@dataclass(eq=False)
class PublishOp(Op):
    channel: str
    data: bytes
    info: PeerInfo
    options: NamespaceOptions


@dataclass(eq=False)
class PresenceOp(Op):
    channel: str


@dataclass(eq=False)
class PresenceStatsOp(Op):
    channel: str


@dataclass(eq=False)
class HistoryOp(Op):
    channel: str
    options: NamespaceOptions
    since: tuple[int, str] | None
    limit: int
    reverse: bool


@dataclass(eq=False)
class RpcOp(Op):
    rpc_method: str
    data: bytes | None
    user: str
    client: str


@dataclass(eq=False)
class SendOp(Op):
    """An asynchronous message from the client (no reply)."""

    data: bytes | None
    user: str
    client: str


@dataclass(eq=False)
class PresenceRefreshOp(Op):
    """Refresh this connection's presence in these channels (TTL keep-alive)."""

    entries: list[tuple[str, PeerInfo]]


_OP_METHODS: dict[type, str] = {
    SubscribeOp: "subscribe",
    ConnectOp: "connect",
    UnsubscribeOp: "unsubscribe",
    PublishOp: "publish",
    PresenceOp: "presence",
    PresenceStatsOp: "presence_stats",
    HistoryOp: "history",
    RpcOp: "rpc",
    SendOp: "send",
    PresenceRefreshOp: "presence_refresh",
}


@dataclass(frozen=True, slots=True)
class StreamState:
    """What the engine said when subscribing: the stream's top position and,
    when recovering, the publications after the client's position."""

    offset: int
    epoch: str
    publications: Sequence[PublicationLike] = ()


class _SubState(enum.Enum):
    SUBSCRIBING = "subscribing"
    SUBSCRIBED = "subscribed"


@dataclass
class _Subscription:
    channel: str
    options: NamespaceOptions
    info: PeerInfo
    server_side: bool
    positioned: bool
    push_join_leave: bool
    expire_at: int | None
    state: _SubState = _SubState.SUBSCRIBING
    offset: int = 0
    epoch: str = ""
    # Publications that arrived while subscribing: (offset, epoch, frame).
    buffer: list[tuple[int, str, bytes]] = field(default_factory=list)


class _CommandFailedError(Exception):
    """Internal: answer the current command with an error or close the connection."""

    def __init__(self, outcome: ErrorCode | Disconnect) -> None:
        super().__init__(str(outcome))
        self.outcome = outcome


class Session:
    """The state of one connection."""

    def __init__(
        self,
        client_id: str,
        *,
        config: SessionConfig,
        rules: ChannelRules,
        verifier: TokenVerifier,
        now: float,
        url_token: str | None = None,
        observer: SessionObserver | None = None,
    ) -> None:
        self.client_id = client_id
        self.config = config
        self.rules = rules
        self.verifier = verifier
        self.observer: SessionObserver = observer or _NullObserver()
        self.state = SessionState.CONNECTING
        self.user = ""
        self.tenant = ""
        self.conn_info: bytes | None = None
        self.expire_at: int | None = None
        self.close_reason: Disconnect | None = None
        self.queued_bytes = 0
        self._url_token = url_token
        self._outgoing: list[bytes] = []
        self._effects: list[Op] = []
        self._subs: dict[str, _Subscription] = {}
        self._queue: deque[Command] = deque()
        self._waiting: Op | None = None  # the connect or subscribe the next commands wait for
        self._now = now
        self._unusable = False  # after a connect error, as Centrifuge
        self._created = now
        self._next_ping: float | None = None
        self._pong_deadline: float | None = None
        self._next_presence: float | None = None
        self._bucket = TokenBucket(config.command_rate, config.command_burst)
        self._rate_violations = 0

    # -- outputs ----------------------------------------------------------------

    def data_to_send(self) -> list[bytes]:
        """Frames to write, in order; each is one protocol message."""
        out, self._outgoing = self._outgoing, []
        self.queued_bytes = 0
        return out

    def effects(self) -> list[Op]:
        out, self._effects = self._effects, []
        return out

    @property
    def closed(self) -> bool:
        return self.state is SessionState.CLOSED

    @property
    def channels(self) -> list[str]:
        return list(self._subs)

    def next_deadline(self) -> float | None:
        """When ``tick`` must run next (``None``: nothing scheduled)."""
        if self.state is SessionState.CLOSED:
            return None
        if self.state is SessionState.CONNECTING:
            return self._created + self.config.connect_timeout
        times = [t for t in (self._next_ping, self._pong_deadline, self._next_presence) if t is not None]
        if self.expire_at is not None:
            times.append(self.expire_at + self.config.expired_close_delay)
        times.extend(
            s.expire_at + self.config.expired_close_delay for s in self._subs.values() if s.expire_at
        )
        return min(times) if times else None

    # -- inputs -----------------------------------------------------------------

    def receive_data(self, text: str, now: float) -> None:
        """Handle one text frame from the client."""
        if self.state is SessionState.CLOSED:
            return
        try:
            commands = parse_frame(text)
        except ProtocolViolationError:
            self.close(Disconnects.BAD_REQUEST)
            return
        self._queue.extend(commands)
        self._drain(now)

    def _drain(self, now: float) -> None:
        # One command at a time, as Centrifuge: after a connect or subscribe the
        # rest of the frame waits for its answer, so a subscribe batched after
        # a connect, or a publish after a subscribe, sees the new state.
        self._now = now
        while self._queue and self._waiting is None and not self.closed:
            self._handle(self._queue.popleft(), now)

    def _answered(self, op: Op) -> None:
        if self._waiting is op:
            self._waiting = None
            self._drain(self._now)

    def receive_binary(self) -> None:
        """The JSON protocol has no binary frames."""
        self.close(Disconnects.BAD_REQUEST)

    def tick(self, now: float) -> None:
        """Run the timers that are due: connect deadline, pings, expiry, presence."""
        if self.state is SessionState.CLOSED:
            return
        if self.state is SessionState.CONNECTING:
            if now >= self._created + self.config.connect_timeout:
                self.close(Disconnects.STALE)
            return
        if self._pong_deadline is not None and now >= self._pong_deadline:
            self.close(Disconnects.NO_PONG)
            return
        if self.expire_at is not None and now >= self.expire_at + self.config.expired_close_delay:
            self.close(Disconnects.EXPIRED)
            return
        for sub in self._subs.values():
            if sub.expire_at is not None and now >= sub.expire_at + self.config.expired_close_delay:
                self.close(Disconnects.SUB_EXPIRED)
                return
        if self._next_ping is not None and now >= self._next_ping:
            self._push(PING_FRAME)
            self._next_ping = now + self.config.ping_interval
            if self.config.pong_timeout > 0:
                self._pong_deadline = now + self.config.pong_timeout
        if self._next_presence is not None and now >= self._next_presence:
            self._next_presence = now + self.config.presence_update_interval
            entries = [
                (s.channel, s.info)
                for s in self._subs.values()
                if s.options.presence and s.state is _SubState.SUBSCRIBED
            ]
            if entries:
                self._effects.append(PresenceRefreshOp(0, entries))

    def close(self, reason: Disconnect) -> None:
        """Ask for the connection to be closed (the first reason wins)."""
        if self.state is SessionState.CLOSED:
            return
        self.state = SessionState.CLOSED
        self.close_reason = reason

    def cleanup_ops(self) -> list[UnsubscribeOp]:
        """After the connection ended: what to undo for every subscription."""
        ops = [UnsubscribeOp(0, s.channel, s.options, s.info) for s in self._subs.values()]
        self._subs.clear()
        return ops

    # -- pushes from the node -----------------------------------------------------

    def deliver_publication(self, channel: str, frame: bytes, offset: int, epoch: str) -> None:
        """A publication fanned out to this connection (``frame`` is shared, encoded once)."""
        sub = self._subs.get(channel)
        if sub is None or self.state is SessionState.CLOSED:
            return
        if sub.state is _SubState.SUBSCRIBING:
            sub.buffer.append((offset, epoch, frame))
            return
        if sub.positioned and offset:
            if sub.epoch and epoch != sub.epoch:
                self._insufficient_state(sub)
                return
            if offset <= sub.offset:
                return  # already delivered (recovered, or a duplicate)
            if offset != sub.offset + 1:
                self._insufficient_state(sub)
                return
            sub.offset = offset
            sub.epoch = epoch
        self._push(frame)

    def deliver_join_leave(self, channel: str, frame: bytes) -> None:
        sub = self._subs.get(channel)
        if sub is not None and sub.push_join_leave and sub.state is _SubState.SUBSCRIBED:
            self._push(frame)

    def deliver(self, frame: bytes) -> None:
        """A push not tied to a subscription (message, refresh)."""
        if self.state is not SessionState.CLOSED:
            self._push(frame)

    def server_unsubscribe(self, channel: str) -> None:
        """The application unsubscribed this connection from ``channel``."""
        sub = self._subs.pop(channel, None)
        if sub is None:
            return
        self._push(encode_unsubscribe_push(channel, UnsubscribeCode.SERVER, UnsubscribeCode.SERVER.reason))
        self._effects.append(UnsubscribeOp(0, sub.channel, sub.options, sub.info))

    def subscribed_to(self, channel: str) -> bool:
        sub = self._subs.get(channel)
        return sub is not None and sub.state is _SubState.SUBSCRIBED

    def stream_position(self, channel: str) -> tuple[int, str] | None:
        """Where a subscribed, positioned subscription is in its stream: ``(offset, epoch)``
        of the last publication delivered; None for any other subscription (or none)."""
        sub = self._subs.get(channel)
        if sub is None or not sub.positioned or sub.state is not _SubState.SUBSCRIBED or self.closed:
            return None
        return sub.offset, sub.epoch

    def position_lost(self, channel: str) -> None:
        """The shell found this positioned subscription behind its stream for good (the periodic
        position check): insufficient state, as for a gap seen in a publication."""
        if self.stream_position(channel) is not None:
            self._insufficient_state(self._subs[channel])

    # -- answers from the shell ---------------------------------------------------

    def resolve(self, op: Op, result: Mapping[str, Any]) -> None:
        """A successful result of a simple operation (publish, presence, history, rpc)."""
        if op.cmd_id and self.state is not SessionState.CLOSED:
            self._push(encode_reply(op.cmd_id, op.method, result))

    def reject(self, op: Op, outcome: ErrorCode | Disconnect, message: str | None = None) -> None:
        """An operation failed: an error reply (``message`` overrides the
        code's own), or closing the connection."""
        if isinstance(op, SubscribeOp):
            sub = self._subs.get(op.channel)
            if sub is not None and sub.state is _SubState.SUBSCRIBING:
                del self._subs[op.channel]
        if self.state is SessionState.CLOSED:
            return
        if isinstance(outcome, Disconnect):
            self.close(outcome)
            return
        self.observer.error(op.method, int(outcome))
        if isinstance(op, ConnectOp):
            self._unusable = True
        if op.cmd_id:
            self._push(encode_error(op.cmd_id, outcome, message))
        self._answered(op)

    def connected(self, op: ConnectOp, streams: Mapping[str, StreamState], now: float) -> None:
        """The connection is accepted; ``streams`` answers its server-side subscriptions."""
        if self.state is SessionState.CLOSED:
            return
        subs: dict[str, Any] = {}
        for sub_op in op.subscriptions:
            stream = streams.get(sub_op.channel)
            if stream is None:
                self.reject(op, Disconnects.SERVER_ERROR)
                return
            result = self._finish_subscribe(sub_op, stream, now)
            if result is None:
                return
            subs[sub_op.channel] = result
        self.state = SessionState.CONNECTED
        reply: dict[str, Any] = {"client": self.client_id, "version": self.config.version}
        if self.config.node:
            reply["node"] = self.config.node
        if self.config.ping_interval > 0:
            reply["ping"] = max(1, round(self.config.ping_interval))
            reply["pong"] = True
            self._next_ping = now + self.config.ping_interval
        if self.expire_at is not None:
            reply["expires"] = True
            reply["ttl"] = max(0, int(self.expire_at - now))
        if subs:
            reply["subs"] = subs
        self._push(encode_reply(op.cmd_id, "connect", reply))
        self._flush_buffers(op.subscriptions)
        if self.config.presence_update_interval > 0:
            self._next_presence = now + self.config.presence_update_interval
        self._now = now
        self._answered(op)

    def subscribed(self, op: SubscribeOp, stream: StreamState, now: float) -> bool:
        """A client-side subscription is in place (or recovered). ``False``: it
        was refused after all (the shell undoes what it did for it)."""
        self._now = now
        if self.state is SessionState.CLOSED or op.channel not in self._subs:
            self._answered(op)
            return False
        result = self._finish_subscribe(op, stream, now)
        if result is None:
            self._answered(op)
            return False
        self._push(encode_reply(op.cmd_id, "subscribe", result))
        self._flush_buffers([op])
        self._now = now
        self._answered(op)
        return True

    # -- internals ----------------------------------------------------------------

    def _push(self, frame: bytes) -> None:
        self._outgoing.append(frame)
        self.queued_bytes += len(frame)
        if self.config.queue_max_bytes and self.queued_bytes > self.config.queue_max_bytes:
            self.observer.limit(LimitKind.QUEUE, self.client_id, self.user)
            self._outgoing.clear()
            self.queued_bytes = 0
            self.close(Disconnects.SLOW)

    def _insufficient_state(self, sub: _Subscription) -> None:
        self.observer.recovery("insufficient_state")
        if sub.server_side:
            self.close(Disconnects.INSUFFICIENT_STATE)
            return
        del self._subs[sub.channel]
        code = UnsubscribeCode.INSUFFICIENT_STATE
        self._push(encode_unsubscribe_push(sub.channel, code, code.reason))
        self._effects.append(UnsubscribeOp(0, sub.channel, sub.options, sub.info))

    def _finish_subscribe(self, op: SubscribeOp, stream: StreamState, now: float) -> dict[str, Any] | None:
        """The SubscribeResult for ``op``, with recovery merged with what was
        buffered meanwhile; ``None`` if the subscription failed instead."""
        sub = self._subs[op.channel]
        result: dict[str, Any] = {}
        if op.expire_at is not None:
            result["expires"] = True
            result["ttl"] = max(0, int(op.expire_at - now))
        if not (op.positioned or op.recoverable):
            sub.state = _SubState.SUBSCRIBED
            return result
        result["positioned"] = True
        if op.recoverable:
            result["recoverable"] = True
        start = stream.offset
        recovered_pubs: list[PublicationLike] = []
        if op.since is not None:
            result["was_recovering"] = True
            offset, epoch = op.since
            recovered = _stream_recovered(stream, offset, epoch)
            self.observer.recovery("recovered" if recovered else "not_recovered")
            if recovered:
                recovered_pubs = list(stream.publications)
                result["recovered"] = True
                start = offset + len(recovered_pubs)
            elif op.reject_unrecovered:
                del self._subs[op.channel]
                self.reject(op, ErrorCode.UNRECOVERABLE_POSITION)
                return None
        # Publications buffered while subscribing: those at or before `start`
        # are already in the reply (or before the client's position); the rest
        # must continue the stream without a gap.
        expected = start
        pending: list[tuple[int, str, bytes]] = []
        for offset, epoch, frame in sub.buffer:
            if epoch != stream.epoch and stream.epoch:
                self._subscribe_gap(op, sub)
                return None
            if offset <= expected:
                continue
            if offset != expected + 1:
                self._subscribe_gap(op, sub)
                return None
            expected = offset
            pending.append((offset, epoch, frame))
        sub.buffer = pending
        sub.offset = expected
        sub.epoch = stream.epoch
        result["epoch"] = stream.epoch
        # As Centrifuge: a recovered reply carries the client's own offset and
        # the SDK advances it with each recovered publication.
        result["offset"] = op.since[0] if result.get("recovered") and op.since else start
        if recovered_pubs:
            result["publications"] = [publication_json(p) for p in recovered_pubs]
        sub.state = _SubState.SUBSCRIBED
        return result

    def _subscribe_gap(self, op: SubscribeOp, sub: _Subscription) -> None:
        del self._subs[op.channel]
        self.observer.recovery("insufficient_state")
        self.close(Disconnects.INSUFFICIENT_STATE)

    def _flush_buffers(self, ops: Sequence[SubscribeOp]) -> None:
        for op in ops:
            sub = self._subs.get(op.channel)
            if sub is None:
                continue
            for _, _, frame in sub.buffer:
                self._push(frame)
            sub.buffer = []

    def _handle(self, command: Command, now: float) -> None:
        if command.is_pong:
            if self.state is not SessionState.CONNECTED or self._pong_deadline is None:
                self.close(Disconnects.BAD_REQUEST)  # a pong nobody asked for, as Centrifuge
            self._pong_deadline = None
            return
        if self.state is SessionState.CONNECTING and (command.method != "connect" or self._unusable):
            self.close(Disconnects.BAD_REQUEST)
            return
        self.observer.command(command.method)
        if command.method != "connect" and self._rate_limited(command, now):
            return
        handler = getattr(self, f"_on_{command.method}")
        try:
            handler(command, now)
        except _CommandFailedError as failure:
            if isinstance(failure.outcome, Disconnect):
                self.close(failure.outcome)
            else:
                self.observer.error(command.method, int(failure.outcome))
                if command.id:
                    self._push(encode_error(command.id, failure.outcome))

    def _rate_limited(self, command: Command, now: float) -> bool:
        if self._bucket.take(now) == 0.0:
            self._rate_violations = 0
            return False
        self._rate_violations += 1
        self.observer.limit(LimitKind.COMMAND_RATE, self.client_id, self.user)
        if self._rate_violations > self.config.max_rate_violations or not command.id:
            self.close(Disconnects.TOO_MANY_REQUESTS)
        else:
            self.observer.error(command.method, int(ErrorCode.TOO_MANY_REQUESTS))
            self._push(encode_error(command.id, ErrorCode.TOO_MANY_REQUESTS))
        return True

    def _peer(self, chan_info: bytes | None = None) -> PeerInfo:
        return PeerInfo(self.user, self.client_id, self.conn_info, chan_info)

    def _options(self, channel: object) -> tuple[str, NamespaceOptions]:
        if not isinstance(channel, str) or not channel:
            raise _CommandFailedError(Disconnects.BAD_REQUEST)
        if not self.rules.valid_name(channel):
            raise _CommandFailedError(ErrorCode.BAD_REQUEST)
        options = self.rules.options(channel)
        if options is None:
            raise _CommandFailedError(ErrorCode.UNKNOWN_CHANNEL)
        if self.config.tenant_isolation and tenancy.split_tenant(channel)[0] != self.tenant:
            raise _CommandFailedError(ErrorCode.PERMISSION_DENIED)
        return channel, options

    # -- commands -------------------------------------------------------------------

    def _on_connect(self, command: Command, now: float) -> None:
        if self.state is not SessionState.CONNECTING:
            raise _CommandFailedError(Disconnects.BAD_REQUEST)  # already authenticated
        params = command.params
        token = params.get("token") or self._url_token
        claims: ConnectClaims
        if token:
            if not isinstance(token, str):
                raise _CommandFailedError(Disconnects.BAD_REQUEST)
            try:
                claims = self.verifier.verify_connect(token, now)
            except TokenExpiredError:
                self._unusable = True
                raise _CommandFailedError(ErrorCode.TOKEN_EXPIRED) from None
            except InvalidTokenError:
                raise _CommandFailedError(Disconnects.INVALID_TOKEN) from None
            if not claims.user and not self.config.allow_anonymous:
                raise _CommandFailedError(Disconnects.PERMISSION_DENIED)
        elif self.config.allow_anonymous:
            claims = ConnectClaims(user="", expire_at=None, info=None)
        else:
            raise _CommandFailedError(Disconnects.BAD_REQUEST)  # no credentials, as Centrifuge
        self.user = claims.user
        self.tenant = claims.tenant
        self.conn_info = claims.info
        self.expire_at = claims.expire_at
        channels = list(claims.channels)
        if self.config.tenant_isolation:
            if not tenancy.valid_tenant(self.tenant):
                raise _CommandFailedError(Disconnects.INVALID_TOKEN)
            if any(tenancy.split_tenant(c)[0] != self.tenant for c in channels):
                raise _CommandFailedError(Disconnects.PERMISSION_DENIED)
        if self.config.personal_channel and self.user:
            personal = (
                tenancy.personal_channel(self.tenant, self.user)
                if self.config.tenant_isolation
                else self.rules.personal_channel(self.user)
            )
            if self.rules.options(personal) is not None and personal not in channels:
                channels.append(personal)
        if self.config.max_channels and len(channels) > self.config.max_channels:
            self.observer.limit(LimitKind.CHANNELS, self.client_id, self.user)
            raise _CommandFailedError(Disconnects.CHANNEL_LIMIT)
        recover_requests = params.get("subs") or {}
        if not isinstance(recover_requests, dict):
            raise _CommandFailedError(Disconnects.BAD_REQUEST)
        sub_ops = []
        for channel in channels:
            options = self.rules.options(channel)
            if options is None:
                self._unusable = True
                raise _CommandFailedError(ErrorCode.UNKNOWN_CHANNEL)
            request = recover_requests.get(channel) or {}
            sub_ops.append(self._subscribe_op(0, channel, options, request, server_side=True, expire_at=None))
        op = ConnectOp(command.id, self.user, sub_ops)
        self._waiting = op
        self._effects.append(op)

    def _subscribe_op(
        self,
        cmd_id: int,
        channel: str,
        options: NamespaceOptions,
        request: Mapping[str, Any],
        *,
        server_side: bool,
        expire_at: int | None,
        chan_info: bytes | None = None,
    ) -> SubscribeOp:
        history = options.has_history
        recoverable = history and (
            options.force_recovery or (options.allow_recovery and bool(request.get("recoverable")))
        )
        positioned = history and (
            recoverable
            or options.force_positioning
            or (options.allow_positioning and bool(request.get("positioned")))
        )
        since = None
        if recoverable and request.get("recover"):
            offset = request.get("offset", 0)
            epoch = request.get("epoch", "")
            if isinstance(offset, str) and offset.isdigit():
                offset = int(offset)
            if not isinstance(offset, int) or isinstance(offset, bool) or not isinstance(epoch, str):
                raise _CommandFailedError(Disconnects.BAD_REQUEST)
            since = (offset, epoch)
        flag = request.get("flag", 0)
        push_join_leave = options.join_leave and (
            options.force_push_join_leave or server_side or bool(request.get("join_leave"))
        )
        info = self._peer(chan_info)
        self._subs[channel] = _Subscription(
            channel=channel,
            options=options,
            info=info,
            server_side=server_side,
            positioned=positioned,
            push_join_leave=push_join_leave,
            expire_at=expire_at,
        )
        return SubscribeOp(
            cmd_id,
            channel,
            options,
            info,
            since=since,
            positioned=positioned,
            recoverable=recoverable,
            server_side=server_side,
            reject_unrecovered=isinstance(flag, int) and bool(flag & REJECT_UNRECOVERED_FLAG),
            expire_at=expire_at,
        )

    def _on_subscribe(self, command: Command, now: float) -> None:
        params = command.params
        channel = params.get("channel")
        if not isinstance(channel, str) or not channel:
            raise _CommandFailedError(Disconnects.BAD_REQUEST)
        if not self.rules.valid_name(channel):
            raise _CommandFailedError(ErrorCode.BAD_REQUEST)
        if channel in self._subs:
            raise _CommandFailedError(ErrorCode.ALREADY_SUBSCRIBED)
        if self.config.max_channels and len(self._subs) >= self.config.max_channels:
            self.observer.limit(LimitKind.CHANNELS, self.client_id, self.user)
            raise _CommandFailedError(ErrorCode.LIMIT_EXCEEDED)
        channel, options = self._options(channel)
        token = params.get("token")
        expire_at = None
        chan_info = None
        if token:
            if not isinstance(token, str):
                raise _CommandFailedError(Disconnects.BAD_REQUEST)
            try:
                claims = self.verifier.verify_subscribe(token, now)
            except TokenExpiredError:
                raise _CommandFailedError(ErrorCode.TOKEN_EXPIRED) from None
            except InvalidTokenError:
                raise _CommandFailedError(ErrorCode.PERMISSION_DENIED) from None
            if claims.channel != channel or claims.user != self.user:
                raise _CommandFailedError(Disconnects.INVALID_TOKEN)
            expire_at = claims.expire_at
            chan_info = claims.info
        else:
            self._check_subscribe_permission(channel, options)
        op = self._subscribe_op(
            command.id, channel, options, params, server_side=False, expire_at=expire_at, chan_info=chan_info
        )
        self._waiting = op
        self._effects.append(op)

    def _check_subscribe_permission(self, channel: str, options: NamespaceOptions) -> None:
        if self.config.tenant_isolation:
            channel = tenancy.split_tenant(channel)[1]  # `$` and `#` are judged inside the tenant
        if self.rules.is_private(channel):
            raise _CommandFailedError(ErrorCode.PERMISSION_DENIED)
        allowed_users = self.rules.allowed_users(channel)
        if allowed_users is not None:
            if not options.allow_user_limited_channels or self.user not in allowed_users:
                raise _CommandFailedError(ErrorCode.PERMISSION_DENIED)
            return
        if not self.user and not options.allow_subscribe_for_anonymous:
            raise _CommandFailedError(ErrorCode.PERMISSION_DENIED)
        if not options.allow_subscribe_for_client:
            raise _CommandFailedError(ErrorCode.PERMISSION_DENIED)

    def _on_unsubscribe(self, command: Command, now: float) -> None:
        channel = command.params.get("channel")
        if not isinstance(channel, str) or not channel:
            raise _CommandFailedError(Disconnects.BAD_REQUEST)
        sub = self._subs.pop(channel, None)
        if sub is not None:
            self._effects.append(UnsubscribeOp(0, sub.channel, sub.options, sub.info))
        self._push(encode_reply(command.id, "unsubscribe", {}))

    def _allowed(self, channel: str, for_client: bool, for_subscriber: bool) -> bool:
        return for_client or (for_subscriber and self.subscribed_to(channel))

    def _on_publish(self, command: Command, now: float) -> None:
        channel, options = self._options(command.params.get("channel"))
        if not self.user and not options.allow_publish_for_anonymous:
            raise _CommandFailedError(ErrorCode.PERMISSION_DENIED)
        if not self._allowed(channel, options.allow_publish_for_client, options.allow_publish_for_subscriber):
            raise _CommandFailedError(ErrorCode.PERMISSION_DENIED)
        data = raw_json(command.params.get("data"))
        if data is None:
            raise _CommandFailedError(ErrorCode.BAD_REQUEST)
        sub = self._subs.get(channel)
        info = sub.info if sub is not None else self._peer()
        self._effects.append(PublishOp(command.id, channel, data, info, options))

    def _on_presence(self, command: Command, now: float) -> None:
        channel, _ = self._presence_channel(command)
        self._effects.append(PresenceOp(command.id, channel))

    def _on_presence_stats(self, command: Command, now: float) -> None:
        channel, _ = self._presence_channel(command)
        self._effects.append(PresenceStatsOp(command.id, channel))

    def _presence_channel(self, command: Command) -> tuple[str, NamespaceOptions]:
        channel, options = self._options(command.params.get("channel"))
        if not options.presence:
            raise _CommandFailedError(ErrorCode.NOT_AVAILABLE)
        if not self._allowed(
            channel, options.allow_presence_for_client, options.allow_presence_for_subscriber
        ):
            raise _CommandFailedError(ErrorCode.PERMISSION_DENIED)
        return channel, options

    def _on_history(self, command: Command, now: float) -> None:
        params = command.params
        channel, options = self._options(params.get("channel"))
        if not options.has_history:
            raise _CommandFailedError(ErrorCode.NOT_AVAILABLE)
        if not self._allowed(channel, options.allow_history_for_client, options.allow_history_for_subscriber):
            raise _CommandFailedError(ErrorCode.PERMISSION_DENIED)
        limit = params.get("limit", 0)
        reverse = params.get("reverse", False)
        since_param = params.get("since")
        if not isinstance(limit, int) or not isinstance(reverse, bool):
            raise _CommandFailedError(ErrorCode.BAD_REQUEST)
        cap = self.config.history_max_limit
        if cap and (limit < 0 or limit > cap):
            limit = cap
        since = None
        if since_param is not None:
            if not isinstance(since_param, dict):
                raise _CommandFailedError(ErrorCode.BAD_REQUEST)
            offset = since_param.get("offset", 0)
            epoch = since_param.get("epoch", "")
            if isinstance(offset, str) and offset.isdigit():
                offset = int(offset)
            if not isinstance(offset, int) or not isinstance(epoch, str):
                raise _CommandFailedError(ErrorCode.BAD_REQUEST)
            since = (offset, epoch)
        self._effects.append(HistoryOp(command.id, channel, options, since, limit, reverse))

    def _on_ping(self, command: Command, now: float) -> None:
        self._push(encode_reply(command.id, "ping", {}))

    def _on_rpc(self, command: Command, now: float) -> None:
        method = command.params.get("method", "")
        if not isinstance(method, str):
            raise _CommandFailedError(ErrorCode.BAD_REQUEST)
        data = raw_json(command.params.get("data"))
        self._effects.append(RpcOp(command.id, method, data, self.user, self.client_id))

    def _on_send(self, command: Command, now: float) -> None:
        data = raw_json(command.params.get("data"))
        self._effects.append(SendOp(0, data, self.user, self.client_id))

    def _on_refresh(self, command: Command, now: float) -> None:
        token = command.params.get("token")
        if not isinstance(token, str) or not token:
            raise _CommandFailedError(Disconnects.BAD_REQUEST)
        try:
            claims = self.verifier.verify_connect(token, now)
        except TokenExpiredError:
            raise _CommandFailedError(Disconnects.EXPIRED) from None
        except InvalidTokenError:
            raise _CommandFailedError(Disconnects.INVALID_TOKEN) from None
        if claims.user != self.user:
            raise _CommandFailedError(Disconnects.INVALID_TOKEN)
        self.expire_at = claims.expire_at
        if claims.info is not None:
            self.conn_info = claims.info
        result: dict[str, Any] = {"client": self.client_id, "version": self.config.version}
        if self.expire_at is not None:
            result["expires"] = True
            result["ttl"] = max(0, int(self.expire_at - now))
        self._push(encode_reply(command.id, "refresh", result))

    def _on_sub_refresh(self, command: Command, now: float) -> None:
        channel = command.params.get("channel")
        token = command.params.get("token")
        if not isinstance(channel, str) or not channel:
            raise _CommandFailedError(Disconnects.BAD_REQUEST)
        sub = self._subs.get(channel)
        if sub is None:
            raise _CommandFailedError(ErrorCode.PERMISSION_DENIED)
        if not isinstance(token, str) or not token:
            raise _CommandFailedError(ErrorCode.BAD_REQUEST)
        try:
            claims = self.verifier.verify_subscribe(token, now)
        except TokenExpiredError:
            raise _CommandFailedError(ErrorCode.EXPIRED) from None
        except InvalidTokenError:
            raise _CommandFailedError(Disconnects.INVALID_TOKEN) from None
        if claims.channel != channel or claims.user != self.user:
            raise _CommandFailedError(Disconnects.INVALID_TOKEN)
        sub.expire_at = claims.expire_at
        result: dict[str, Any] = {}
        if claims.expire_at is not None:
            result["expires"] = True
            result["ttl"] = max(0, int(claims.expire_at - now))
        self._push(encode_reply(command.id, "sub_refresh", result))


def _stream_recovered(stream: StreamState, offset: int, epoch: str) -> bool:
    """Centrifuge's rule: same epoch, and the publications continue exactly from
    ``offset`` up to the top (or there are none and nothing was missed)."""
    if epoch and epoch != stream.epoch:
        return False
    pubs = stream.publications
    if not pubs:
        return stream.offset == offset
    return pubs[0].offset == offset + 1 and pubs[-1].offset == stream.offset


def json_or_none(data: bytes | None) -> Any:
    """Decode raw JSON bytes (for application handlers)."""
    return None if data is None else orjson.loads(data)
