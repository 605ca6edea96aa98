"""One client connection as a sans-I/O state machine (like ``websockets``' ``protocol.py``).

The session works on typed commands and results: its codec (``Codec``, JSON by default) turns
the frames received into ``Command`` objects - each request parsed by the rule book,
``resonance_worker.domain.requests`` - and the results it decides into frames. One handler per
command, found in a table by request type (``_HANDLERS``), applies the rules: authentication,
permissions, limits, recovery and positioning (``subscriptions``), expiry. An operation it asks
for is completed by one input, ``complete``, whatever the operation.

Input methods: ``receive_data`` (frames, text or binary), ``complete`` (the outcome of an
operation), and from ``SessionCore`` (``session_core.py``: the state and the output queues)
``tick`` (timers), ``deliver_*`` and ``server_unsubscribe`` (pushes fanned out by the node),
``position_lost`` and ``close``. Output methods: ``data_to_send()`` (frames to write),
``effects()`` (operations for the shell, see ``operations``), ``close_reason`` (set once the
connection must close) and ``next_deadline()``. The shell only moves bytes, performs the
operations and feeds their outcomes back.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar

from resonance_worker.domain import tenancy
from resonance_worker.domain.auth import ConnectClaims, InvalidTokenError, TokenExpiredError
from resonance_worker.domain.channels import ChannelRules, NamespaceOptions
from resonance_worker.domain.codes import Disconnect, Disconnects, ErrorCode
from resonance_worker.domain.limits import LimitKind
from resonance_worker.domain.operations import (
    Connected,
    ConnectOp,
    Failed,
    HistoryOp,
    Op,
    Outcome,
    PresenceOp,
    PresenceStatsOp,
    PublishOp,
    RpcOp,
    SendOp,
    StreamState,
    SubscribeOp,
    UnsubscribeOp,
)
from resonance_worker.domain.protocol import ProtocolViolationError
from resonance_worker.domain.requests import rules
from resonance_worker.domain.requests.client import (
    NO_OPTIONS,
    Command,
    ConnectRequest,
    HistoryRequest,
    Malformed,
    PingRequest,
    PresenceRequest,
    PresenceStatsRequest,
    PublishRequest,
    RefreshRequest,
    RpcRequest,
    SendRequest,
    SubRefreshRequest,
    SubscribeOptions,
    SubscribeRequest,
    UnsubscribeRequest,
)
from resonance_worker.domain.requests.rules import RequestError
from resonance_worker.domain.results import (
    ConnectResult,
    PingResult,
    RefreshResult,
    SubRefreshResult,
    SubscribeResult,
    UnsubscribeResult,
)
from resonance_worker.domain.session_core import SessionConfig, SessionCore, SessionObserver, SessionState
from resonance_worker.domain.subscriptions import Subscription, SubState, settle
from resonance_worker.domain.ydocs import DOC_NAMESPACES

__all__ = ["Session", "SessionConfig", "SessionObserver", "SessionState"]


class _RefusedError(Exception):
    """Internal: answer the current command with an error, or close the connection."""

    def __init__(self, outcome: ErrorCode | Disconnect) -> None:
        super().__init__(str(outcome))
        self.outcome = outcome


def _ttl(expire_at: int | None, now: float) -> int | None:
    return None if expire_at is None else max(0, int(expire_at - now))


class Session(SessionCore):
    """One connection: the client protocol's rules over ``SessionCore``'s state."""

    __slots__ = ()  # every attribute is ``SessionCore``'s (slotted: a connection's memory)

    _HANDLERS: ClassVar[dict[type, Callable[[Session, Any, int, float], None]]]
    """The handler of each request type (filled in below the class)."""
    _COMPLETIONS: ClassVar[dict[type, Callable[[Session, Any, Any, float], bool]]]
    """How each kind of outcome completes an operation (results not listed are replies)."""

    # -- inputs -------------------------------------------------------------------------------

    def receive_data(self, data: str | bytes, now: float) -> None:
        """Handle one frame from the client (``str``: a text frame, ``bytes``: a binary one): its
        commands run in order, each waiting for a connect or subscribe before it to be completed.
        A frame that is not this connection's encoding closes it with 3501 and what was wrong.

        After calling this method: call ``data_to_send()`` and write the frames; call
        ``effects()`` and perform the operations, answering each with ``complete``; check
        ``closed``; ask ``next_deadline()`` again."""
        if self.state is SessionState.CLOSED:
            return
        try:
            commands = self.codec.decode(data)
        except ProtocolViolationError as violation:
            self.observer.protocol_error("bad_frame", str(violation))
            self.close(Disconnects.BAD_REQUEST.because(str(violation)))
            return
        if self._queue is None:
            self._queue = deque(commands)
        else:
            self._queue.extend(commands)
        self._drain(now)

    def complete(self, op: Op, outcome: Outcome, now: float) -> bool:
        """Feed back what became of an operation from ``effects()`` (see ``operations`` for the
        outcome each one takes). Returns whether it took effect: False when it failed, the
        connection closed meanwhile, or - for a ``SubscribeOp`` - the subscription was refused
        after all, and then the shell must undo what it did for it.

        After calling this method: call ``data_to_send()`` (the reply, and the replies of the
        commands that waited for it) and ``effects()`` (their operations); check ``closed``."""
        self._now = now
        finish: Callable[[Session, Any, Any, float], bool] = self._COMPLETIONS.get(
            type(outcome), Session._replied
        )
        return finish(self, op, outcome, now)

    # -- completing operations ----------------------------------------------------------------

    def _replied(self, op: Op, result: Any, now: float) -> bool:
        """A simple operation's result (publish, presence, history, rpc) is its reply."""
        if self.state is SessionState.CLOSED:
            return False
        if op.cmd_id:
            self._reply(op.cmd_id, result)
        return True

    def _failed(self, op: Op, failure: Failed, now: float) -> bool:
        if isinstance(op, SubscribeOp):
            sub = self._subs.get(op.channel)
            if sub is not None and sub.state is SubState.SUBSCRIBING:
                del self._subs[op.channel]
        if self.state is SessionState.CLOSED:
            return False
        if isinstance(op, ConnectOp) and not isinstance(failure.outcome, Disconnect):
            self._unusable = True
        self._refuse(op.method, op.cmd_id, failure.outcome, failure.message)
        if not self.closed:
            self._answered(op)
        return False

    def _connected(self, op: Op, outcome: Connected, now: float) -> bool:
        """The connection is accepted; ``outcome.streams`` answers its server-side subscriptions."""
        assert isinstance(op, ConnectOp)
        if self.state is SessionState.CLOSED:
            return False
        subs: dict[str, SubscribeResult] = {}
        for sub_op in op.subscriptions:
            stream = outcome.streams.get(sub_op.channel)
            if stream is None:
                self.close(Disconnects.SERVER_ERROR)
                return False
            result = self._settle(sub_op, stream, now)
            if result is None:
                return False  # closed, or a refused server-side subscription (no reply: stale)
            subs[sub_op.channel] = result
        self.state = SessionState.CONNECTED
        ping = None
        if self.config.ping_interval > 0:
            ping = max(1, round(self.config.ping_interval))
            self._next_ping = now + self.config.ping_interval
        reply = ConnectResult(
            self.client_id,
            self.config.version,
            self.config.node,
            ping,
            _ttl(self.expire_at, now),
            subs,
            outcome.data,
        )
        self._reply(op.cmd_id, reply)
        self._flush_buffers(op.subscriptions)
        if self.config.presence_update_interval > 0:
            self._next_presence = now + self.config.presence_update_interval
        self._answered(op)
        return not self.closed

    def _subscribed(self, op: Op, stream: StreamState, now: float) -> bool:
        """A client-side subscription is in place (or recovered)."""
        assert isinstance(op, SubscribeOp)
        result = None
        if self.state is not SessionState.CLOSED and op.channel in self._subs:
            result = self._settle(op, stream, now)
        if result is not None:
            self._reply(op.cmd_id, result)
            self._flush_buffers([op])
        self._answered(op)
        return result is not None

    def _settle(self, op: SubscribeOp, stream: StreamState, now: float) -> SubscribeResult | None:
        """``op``'s result, or None when it failed (answered, or the connection closed)."""
        settled = settle(self._subs[op.channel], op, stream, now, self.observer)
        if isinstance(settled, Failed):
            del self._subs[op.channel]
            self._failed(op, settled, now)
            return None
        return settled

    def _answered(self, op: Op) -> None:
        if self._waiting is op:
            self._waiting = None
            self._drain(self._now)

    # -- dispatching commands ---------------------------------------------------------------

    def _drain(self, now: float) -> None:
        # One command at a time, as Centrifuge: after a connect or subscribe the
        # rest of the frame waits for its answer, so a subscribe batched after
        # a connect, or a publish after a subscribe, sees the new state.
        self._now = now
        queue = self._queue
        while queue and self._waiting is None and not self.closed:
            self._handle(queue.popleft(), now)
        if queue is not None and not queue and self._queue is queue:
            self._queue = None  # an idle session holds no queue (≈ 0.6 KiB a connection)

    def _handle(self, command: Command, now: float) -> None:
        if command.is_pong:
            if self.state is not SessionState.CONNECTED or self._pong_deadline is None:
                self.close(Disconnects.BAD_REQUEST.because("a pong without a ping"))  # as Centrifuge
            self._pong_deadline = None
            return
        if self.state is SessionState.CONNECTING and (command.method != "connect" or self._unusable):
            detail = "a connect failed before" if self._unusable else f"{command.method} before connect"
            self.close(Disconnects.BAD_REQUEST.because(detail))
            return
        self.observer.command(command.method)
        if command.method != "connect" and self._rate_limited(command, now):
            return
        try:
            self._HANDLERS[type(command.request)](self, command.request, command.id, now)
        except RequestError as error:
            if error.fatal:
                self.close(Disconnects.BAD_REQUEST.because(f"{command.method}: {error.message}"))
            else:
                self._refuse(command.method, command.id, error.code)
        except _RefusedError as refusal:
            self._refuse(command.method, command.id, refusal.outcome)

    def _options(self, channel: str) -> NamespaceOptions:
        """The namespace rules of both paths, then the tenant's channels only (103)."""
        options = rules.channel_options(self.rules, channel)
        if self.config.tenant_isolation and tenancy.split_tenant(channel)[0] != self.tenant:
            raise _RefusedError(ErrorCode.PERMISSION_DENIED)
        return options

    def _allowed(self, channel: str, for_client: bool, for_subscriber: bool) -> bool:
        return for_client or (for_subscriber and self.subscribed_to(channel))

    # -- commands -----------------------------------------------------------------------------
    # One handler per request type (``_HANDLERS``): it raises ``RequestError`` or ``_RefusedError``
    # to answer with an error (or close), pushes a reply, or queues an operation.

    def _on_malformed(self, request: Malformed, cmd_id: int, now: float) -> None:
        raise request.error

    def _on_connect(self, request: ConnectRequest, cmd_id: int, now: float) -> None:
        if self.state is not SessionState.CONNECTING:
            raise _RefusedError(Disconnects.BAD_REQUEST.because("already connected"))
        token = request.token or self._url_token
        claims: ConnectClaims
        if token:
            try:
                claims = self.verifier.verify_connect(token, now)
            except TokenExpiredError:
                self._unusable = True
                raise _RefusedError(ErrorCode.TOKEN_EXPIRED) from None
            except InvalidTokenError as exc:
                raise _RefusedError(Disconnects.INVALID_TOKEN.because(str(exc))) from None
            if not claims.user and not self.config.allow_anonymous:
                raise _RefusedError(
                    Disconnects.PERMISSION_DENIED.because(
                        "the token's sub is empty and anonymous connections are off"
                    )
                )
        elif self.config.allow_anonymous:
            claims = ConnectClaims(user="", expire_at=None, info=None)
        else:  # no credentials: 3501 as Centrifuge, saying so
            raise _RefusedError(
                Disconnects.BAD_REQUEST.because(
                    "no token (in connect or ?token=) and anonymous connections are off"
                )
            )
        self.user = claims.user
        self.tenant = claims.tenant
        self.consent = claims.consent
        self.conn_info = claims.info
        self.claims = claims.claims
        self.platform = request.name
        self.expire_at = claims.expire_at
        channels = list(claims.channels)
        if self.config.tenant_isolation:
            if not tenancy.valid_tenant(self.tenant):
                raise _RefusedError(Disconnects.INVALID_TOKEN.because("no valid tenant in the token"))
            if any(tenancy.split_tenant(c)[0] != self.tenant for c in channels):
                raise _RefusedError(Disconnects.PERMISSION_DENIED.because("a channel of another tenant"))
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
            raise _RefusedError(
                Disconnects.CHANNEL_LIMIT.because(f"more than {self.config.max_channels} channels")
            )
        sub_ops = []
        for channel in channels:
            options = self.rules.options(channel)
            if options is None:
                self._unusable = True
                raise _RefusedError(ErrorCode.UNKNOWN_CHANNEL)
            asked = request.subs.get(channel, NO_OPTIONS)
            sub_ops.append(self._subscribe_op(0, channel, options, asked, server_side=True))
        op = ConnectOp(cmd_id, self.user, sub_ops, traceparent=request.traceparent)
        self._waiting = op
        self._effects.append(op)

    def _subscribe_op(
        self,
        cmd_id: int,
        channel: str,
        options: NamespaceOptions,
        asked: SubscribeOptions,
        *,
        server_side: bool,
        expire_at: int | None = None,
        chan_info: bytes | None = None,
    ) -> SubscribeOp:
        """What the namespace grants of what was asked; the subscription starts SUBSCRIBING."""
        history = options.has_history
        recoverable = history and (options.force_recovery or (options.allow_recovery and asked.recoverable))
        positioned = history and (
            recoverable or options.force_positioning or (options.allow_positioning and asked.positioned)
        )
        push_join_leave = options.join_leave and (
            options.force_push_join_leave or server_side or asked.join_leave
        )
        info = self._peer(chan_info)
        self._subs[channel] = Subscription(
            channel, options, info, server_side, positioned, push_join_leave, expire_at
        )
        return SubscribeOp(
            cmd_id,
            channel,
            options,
            info,
            since=asked.since if recoverable else None,
            positioned=positioned,
            recoverable=recoverable,
            server_side=server_side,
            reject_unrecovered=asked.reject_unrecovered,
            expire_at=expire_at,
        )

    def _on_subscribe(self, request: SubscribeRequest, cmd_id: int, now: float) -> None:
        channel = request.channel
        rules.require_valid_name(self.rules, channel)
        if channel in self._subs:
            raise _RefusedError(ErrorCode.ALREADY_SUBSCRIBED)
        if self.config.max_channels and len(self._subs) >= self.config.max_channels:
            self.observer.limit(LimitKind.CHANNELS, self.client_id, self.user)
            raise _RefusedError(ErrorCode.LIMIT_EXCEEDED)
        options = self._options(channel)
        expire_at = None
        chan_info = None
        if request.token:
            try:
                claims = self.verifier.verify_subscribe(request.token, now)
            except TokenExpiredError:
                raise _RefusedError(ErrorCode.TOKEN_EXPIRED) from None
            except InvalidTokenError:
                raise _RefusedError(ErrorCode.PERMISSION_DENIED) from None
            if claims.channel != channel or claims.user != self.user:
                raise _RefusedError(
                    Disconnects.INVALID_TOKEN.because("subscription token of another channel or user")
                )
            expire_at = claims.expire_at
            chan_info = claims.info
        else:
            self._check_subscribe_permission(channel, options)
        op = self._subscribe_op(
            cmd_id,
            channel,
            options,
            request.options,
            server_side=False,
            expire_at=expire_at,
            chan_info=chan_info,
        )
        self._waiting = op
        self._effects.append(op)

    def _check_subscribe_permission(self, channel: str, options: NamespaceOptions) -> None:
        if self.config.tenant_isolation:
            channel = tenancy.split_tenant(channel)[1]  # `$` and `#` are judged inside the tenant
        if self.rules.is_private(channel):
            raise _RefusedError(ErrorCode.PERMISSION_DENIED)
        allowed_users = self.rules.allowed_users(channel)
        if allowed_users is not None:
            if not options.allow_user_limited_channels or self.user not in allowed_users:
                raise _RefusedError(ErrorCode.PERMISSION_DENIED)
            return
        if not self.user and not options.allow_subscribe_for_anonymous:
            raise _RefusedError(ErrorCode.PERMISSION_DENIED)
        if not options.allow_subscribe_for_client:
            raise _RefusedError(ErrorCode.PERMISSION_DENIED)

    def _on_unsubscribe(self, request: UnsubscribeRequest, cmd_id: int, now: float) -> None:
        sub = self._subs.pop(request.channel, None)
        if sub is not None:
            self._effects.append(UnsubscribeOp(0, sub.channel, sub.options, sub.info))
        self._reply(cmd_id, UnsubscribeResult())

    def _on_publish(self, request: PublishRequest, cmd_id: int, now: float) -> None:
        channel = request.channel
        options = self._options(channel)
        if not self.user and not options.allow_publish_for_anonymous:
            raise _RefusedError(ErrorCode.PERMISSION_DENIED)
        if not self._allowed(channel, options.allow_publish_for_client, options.allow_publish_for_subscriber):
            raise _RefusedError(ErrorCode.PERMISSION_DENIED)
        if ChannelRules.namespace_of(channel) in DOC_NAMESPACES:  # written through doc.send (logged) only
            raise _RefusedError(ErrorCode.PERMISSION_DENIED)
        sub = self._subs.get(channel)
        info = sub.info if sub is not None else self._peer()
        self._effects.append(PublishOp(cmd_id, channel, request.data, info, options))

    def _on_presence(self, request: PresenceRequest, cmd_id: int, now: float) -> None:
        self._effects.append(PresenceOp(cmd_id, self._presence_channel(request.channel)))

    def _on_presence_stats(self, request: PresenceStatsRequest, cmd_id: int, now: float) -> None:
        self._effects.append(PresenceStatsOp(cmd_id, self._presence_channel(request.channel)))

    def _presence_channel(self, channel: str) -> str:
        options = self._options(channel)
        rules.require_presence(options)
        if not self._allowed(
            channel, options.allow_presence_for_client, options.allow_presence_for_subscriber
        ):
            raise _RefusedError(ErrorCode.PERMISSION_DENIED)
        return channel

    def _on_history(self, request: HistoryRequest, cmd_id: int, now: float) -> None:
        channel = request.channel
        options = self._options(channel)
        rules.require_history(options)
        if not self._allowed(channel, options.allow_history_for_client, options.allow_history_for_subscriber):
            raise _RefusedError(ErrorCode.PERMISSION_DENIED)
        limit = rules.capped_limit(request.limit, self.config.history_max_limit)
        self._effects.append(HistoryOp(cmd_id, channel, options, request.since, limit, request.reverse))

    def _on_ping(self, request: PingRequest, cmd_id: int, now: float) -> None:
        self._reply(cmd_id, PingResult())

    def _on_rpc(self, request: RpcRequest, cmd_id: int, now: float) -> None:
        self._effects.append(
            RpcOp(cmd_id, request.method, request.data, self.user, self.client_id, self.consent)
        )

    def _on_send(self, request: SendRequest, cmd_id: int, now: float) -> None:
        self._effects.append(SendOp(0, request.data, self.user, self.client_id))

    def _on_refresh(self, request: RefreshRequest, cmd_id: int, now: float) -> None:
        try:
            claims = self.verifier.verify_connect(request.token, now)
        except TokenExpiredError:
            raise _RefusedError(Disconnects.EXPIRED) from None
        except InvalidTokenError as exc:
            raise _RefusedError(Disconnects.INVALID_TOKEN.because(str(exc))) from None
        if claims.user != self.user:
            raise _RefusedError(Disconnects.INVALID_TOKEN.because("refresh token of another user"))
        self.expire_at = claims.expire_at
        if claims.info is not None:
            self.conn_info = claims.info
        result = RefreshResult(self.client_id, self.config.version, _ttl(self.expire_at, now))
        self._reply(cmd_id, result)

    def _on_sub_refresh(self, request: SubRefreshRequest, cmd_id: int, now: float) -> None:
        sub = self._subs.get(request.channel)
        if sub is None:
            raise _RefusedError(ErrorCode.PERMISSION_DENIED)
        if not request.token:
            raise _RefusedError(ErrorCode.BAD_REQUEST)
        try:
            claims = self.verifier.verify_subscribe(request.token, now)
        except TokenExpiredError:
            raise _RefusedError(ErrorCode.EXPIRED) from None
        except InvalidTokenError:
            raise _RefusedError(Disconnects.INVALID_TOKEN) from None
        if claims.channel != request.channel or claims.user != self.user:
            raise _RefusedError(Disconnects.INVALID_TOKEN)
        sub.expire_at = claims.expire_at
        self._reply(cmd_id, SubRefreshResult(_ttl(claims.expire_at, now)))


Session._HANDLERS = {
    Malformed: Session._on_malformed,
    ConnectRequest: Session._on_connect,
    SubscribeRequest: Session._on_subscribe,
    UnsubscribeRequest: Session._on_unsubscribe,
    PublishRequest: Session._on_publish,
    PresenceRequest: Session._on_presence,
    PresenceStatsRequest: Session._on_presence_stats,
    HistoryRequest: Session._on_history,
    PingRequest: Session._on_ping,
    RpcRequest: Session._on_rpc,
    SendRequest: Session._on_send,
    RefreshRequest: Session._on_refresh,
    SubRefreshRequest: Session._on_sub_refresh,
}
Session._COMPLETIONS = {
    Failed: Session._failed,
    Connected: Session._connected,
    StreamState: Session._subscribed,
}
