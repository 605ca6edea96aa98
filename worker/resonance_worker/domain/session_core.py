"""The state of one client connection and its outputs (sans-I/O): the base of ``Session``.

``SessionCore`` holds what a connection is - its user, its subscriptions (``subscriptions``),
its timers - and what it has to say: the frames to write (``data_to_send``), the operations for
the shell (``effects``) and why it must close (``close_reason``). It also takes what needs no
protocol rules: the timers (``tick``) and the pushes the node fans out (``deliver_*``).
``Session`` (``session.py``) adds the rules: commands in, their handlers, operations completed.
The split follows ``websockets``' ``Protocol`` (state and output) and ``ServerProtocol`` (rules).
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from resonance_worker.domain.auth import TokenVerifier
from resonance_worker.domain.channels import ChannelRules
from resonance_worker.domain.codes import Disconnect, Disconnects, ErrorCode, UnsubscribeCode
from resonance_worker.domain.consent import DataKind
from resonance_worker.domain.limits import LimitKind, TokenBucket
from resonance_worker.domain.operations import Op, PeerInfo, PresenceRefreshOp, SubscribeOp, UnsubscribeOp
from resonance_worker.domain.protocol import JSON_CODEC, Codec, UnencodableError
from resonance_worker.domain.requests.client import Command
from resonance_worker.domain.results import Result
from resonance_worker.domain.subscriptions import Subscription, SubState


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


class SessionObserver(Protocol):
    """Receives what the session decides, for metrics and logs (no I/O in the domain)."""

    def command(self, method: str) -> None: ...
    def error(self, method: str, code: int) -> None: ...
    def limit(self, kind: str, client: str, user: str) -> None: ...
    def recovery(self, outcome: str) -> None: ...
    def protocol_error(self, kind: str, detail: str) -> None:
        """The connection is closed for its encoding: ``bad_frame`` (3501, a frame that is not the
        protocol) or ``unencodable`` (3506, a reply its encoding cannot carry)."""


class _NullObserver:
    def command(self, method: str) -> None:
        return None

    def error(self, method: str, code: int) -> None:
        return None

    def limit(self, kind: str, client: str, user: str) -> None:
        return None

    def recovery(self, outcome: str) -> None:
        return None

    def protocol_error(self, kind: str, detail: str) -> None:
        return None


class SessionCore:
    """The state of one connection and its output queues.

    Slotted: an instance ``__dict__`` of these 30 attributes outgrows CPython's shared keys and costs
    about 1.2 KiB a connection (``docs/benchmarks.md``, idle memory)."""

    __slots__ = (
        "_bucket",
        "_created",
        "_effects",
        "_next_ping",
        "_next_presence",
        "_now",
        "_outgoing",
        "_pong_deadline",
        "_queue",
        "_rate_violations",
        "_subs",
        "_unusable",
        "_url_token",
        "_waiting",
        "claims",
        "client_id",
        "close_reason",
        "codec",
        "config",
        "conn_info",
        "consent",
        "expire_at",
        "observer",
        "platform",
        "queued_bytes",
        "rules",
        "state",
        "tenant",
        "user",
        "verifier",
    )

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
        codec: Codec = JSON_CODEC,
    ) -> None:
        self.client_id = client_id
        self.config = config
        self.rules = rules
        self.verifier = verifier
        self.observer: SessionObserver = observer or _NullObserver()
        self.codec = codec
        self.state = SessionState.CONNECTING
        self.user = ""
        self.tenant = ""
        self.consent: frozenset[DataKind] | None = None
        """The token's consent claim (None: absent); what it allows: ``domain.consent.granted``."""
        self.conn_info: bytes | None = None
        self.claims: Mapping[str, Any] = {}
        """The connection token's claims (feature-flag targeting)."""
        self.platform = ""
        """The client's name from its connect command (feature-flag targeting)."""
        self.expire_at: int | None = None
        self.close_reason: Disconnect | None = None
        self.queued_bytes = 0
        self._url_token = url_token
        self._outgoing: list[bytes] = []
        self._effects: list[Op] = []
        self._subs: dict[str, Subscription] = {}
        self._queue: deque[Command] | None = None  # commands waiting their turn; made when some arrive
        self._waiting: Op | None = None  # the connect or subscribe the next commands wait for
        self._now = now
        self._unusable = False  # after a connect error, as Centrifuge
        self._created = now
        self._next_ping: float | None = None
        self._pong_deadline: float | None = None
        self._next_presence: float | None = None
        self._bucket = TokenBucket(config.command_rate, config.command_burst)
        self._rate_violations = 0

    # -- outputs ------------------------------------------------------------------------------

    def data_to_send(self) -> list[bytes]:
        """Frames to write, in order; each is one protocol message. Call it after every input
        method and write what it returns; then, if ``closed``, close with ``close_reason``."""
        out, self._outgoing = self._outgoing, []
        self.queued_bytes = 0
        return out

    def effects(self) -> list[Op]:
        """Operations to perform, in order (``Op.runs_beside`` may run beside the others). Call
        it after every input method; answer each operation with ``complete`` (see
        ``resonance_worker.domain.operations`` for which need an answer)."""
        out, self._effects = self._effects, []
        return out

    @property
    def closed(self) -> bool:
        return self.state is SessionState.CLOSED

    @property
    def channels(self) -> list[str]:
        return list(self._subs)

    def next_deadline(self) -> float | None:
        """When ``tick`` must run next (``None``: nothing scheduled). Ask again after each input."""
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

    def subscribed_to(self, channel: str) -> bool:
        sub = self._subs.get(channel)
        return sub is not None and sub.state is SubState.SUBSCRIBED

    def stream_position(self, channel: str) -> tuple[int, str] | None:
        """Where a subscribed, positioned subscription is in its stream: ``(offset, epoch)``
        of the last publication delivered; None for any other subscription (or none)."""
        sub = self._subs.get(channel)
        if sub is None or not sub.positioned or sub.state is not SubState.SUBSCRIBED or self.closed:
            return None
        return sub.offset, sub.epoch

    # -- timers, closing, pushes from the node -------------------------------------------------

    def tick(self, now: float) -> None:
        """Run the timers that are due: connect deadline, pings, expiry, presence.

        After calling this method: call ``data_to_send()`` (a ping), ``effects()`` (a presence
        refresh) and check ``closed``; ask ``next_deadline()`` again."""
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
            self._push(self.codec.ping)
            self._next_ping = now + self.config.ping_interval
            if self.config.pong_timeout > 0:
                self._pong_deadline = now + self.config.pong_timeout
        if self._next_presence is not None and now >= self._next_presence:
            self._next_presence = now + self.config.presence_update_interval
            entries = [
                (s.channel, s.info)
                for s in self._subs.values()
                if s.options.presence and s.state is SubState.SUBSCRIBED
            ]
            if entries:
                self._effects.append(PresenceRefreshOp(0, entries))

    def close(self, reason: Disconnect) -> None:
        """Ask for the connection to be closed (the first reason wins). After calling this
        method: write what ``data_to_send()`` holds, then close with ``close_reason``."""
        if self.state is SessionState.CLOSED:
            return
        self.state = SessionState.CLOSED
        self.close_reason = reason

    def cleanup_ops(self) -> list[UnsubscribeOp]:
        """After the connection ended: what to undo for every subscription (perform each)."""
        ops = [UnsubscribeOp(0, s.channel, s.options, s.info) for s in self._subs.values()]
        self._subs.clear()
        return ops

    # -- pushes from the node -----------------------------------------------------------------
    # After calling any of these: flush ``data_to_send()`` (the node batches it once per loop
    # iteration), perform ``effects()`` (an unsubscribe after a gap) and check ``closed``.

    def deliver_publication(self, channel: str, frame: bytes, offset: int, epoch: str) -> None:
        """A publication fanned out to this connection (``frame`` is shared, encoded once)."""
        sub = self._subs.get(channel)
        if sub is None or self.state is SessionState.CLOSED:
            return
        if sub.state is SubState.SUBSCRIBING:
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
        if sub is not None and sub.push_join_leave and sub.state is SubState.SUBSCRIBED:
            self._push(frame)

    def deliver(self, frame: bytes) -> None:
        """A push not tied to a subscription (message, refresh)."""
        if self.state is not SessionState.CLOSED:
            self._push(frame)

    def server_unsubscribe(self, channel: str) -> None:
        """The application unsubscribed this connection from ``channel``: an unsubscribe push,
        and an ``UnsubscribeOp`` in ``effects()`` to perform."""
        sub = self._subs.pop(channel, None)
        if sub is None:
            return
        code = UnsubscribeCode.SERVER
        self._push(self.codec.unsubscribe_push(channel, code, code.reason))
        self._effects.append(UnsubscribeOp(0, sub.channel, sub.options, sub.info))

    def position_lost(self, channel: str) -> None:
        """The shell found this positioned subscription behind its stream for good (the periodic
        position check): insufficient state, as for a gap seen in a publication - an unsubscribe
        push (2500) and an ``UnsubscribeOp`` in ``effects()``, or for a server-side subscription
        ``closed`` with 3010."""
        if self.stream_position(channel) is not None:
            self._insufficient_state(self._subs[channel])

    # -- internals ----------------------------------------------------------------------------

    def _push(self, frame: bytes) -> None:
        self._outgoing.append(frame)
        self.queued_bytes += len(frame)
        if self.config.queue_max_bytes and self.queued_bytes > self.config.queue_max_bytes:
            self.observer.limit(LimitKind.QUEUE, self.client_id, self.user)
            self._outgoing.clear()
            self.queued_bytes = 0
            self.close(Disconnects.SLOW)

    def _reply(self, cmd_id: int, result: Result) -> None:
        """Queue a successful reply; close with 3506 when this encoding cannot carry it (history
        or recovered publications whose data is not JSON, for a JSON client: as Centrifugo)."""
        try:
            frame = self.codec.reply(cmd_id, result)
        except UnencodableError as error:
            self.observer.protocol_error("unencodable", str(error))
            self.close(Disconnects.INAPPROPRIATE_PROTOCOL)
            return
        self._push(frame)

    def _refuse(
        self, method: str, cmd_id: int, outcome: ErrorCode | Disconnect, message: str | None = None
    ) -> None:
        """Answer a command with an error, or close the connection."""
        if isinstance(outcome, Disconnect):
            self.close(outcome)
            return
        self.observer.error(method, int(outcome))
        if cmd_id:
            self._push(self.codec.error(cmd_id, outcome, message))

    def _insufficient_state(self, sub: Subscription) -> None:
        self.observer.recovery("insufficient_state")
        if sub.server_side:
            self.close(Disconnects.INSUFFICIENT_STATE)
            return
        del self._subs[sub.channel]
        code = UnsubscribeCode.INSUFFICIENT_STATE
        self._push(self.codec.unsubscribe_push(sub.channel, code, code.reason))
        self._effects.append(UnsubscribeOp(0, sub.channel, sub.options, sub.info))

    def _peer(self, chan_info: bytes | None = None) -> PeerInfo:
        return PeerInfo(self.user, self.client_id, self.conn_info, chan_info)

    def _flush_buffers(self, ops: Sequence[SubscribeOp]) -> None:
        for op in ops:
            sub = self._subs.get(op.channel)
            if sub is None:
                continue
            for _, _, frame in sub.buffer:
                self._push(frame)
            sub.buffer = []

    def _rate_limited(self, command: Command, now: float) -> bool:
        if self._bucket.take(now) == 0.0:
            self._rate_violations = 0
            return False
        self._rate_violations += 1
        self.observer.limit(LimitKind.COMMAND_RATE, self.client_id, self.user)
        if self._rate_violations > self.config.max_rate_violations or not command.id:
            self.close(Disconnects.TOO_MANY_REQUESTS)
        else:
            self._refuse(command.method, command.id, ErrorCode.TOO_MANY_REQUESTS)
        return True
