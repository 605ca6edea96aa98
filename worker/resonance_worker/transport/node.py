"""The node: this worker's connections, its local subscriptions and the engine.

It performs the operations sessions ask for (against the engine; one performer
per operation type, each completing its operation with one typed outcome,
``Session.complete``), and fans out what the engine delivers: each publication
is encoded once per encoding in use in its channel (JSON, protobuf: each
connection's codec), never per connection, and the same frame object is queued
to every local subscriber of that encoding; the connections touched are flushed
together once per event-loop iteration. Publication data a JSON subscriber
cannot be sent (bytes that are not JSON, from a protobuf client) closes that
subscriber with 3506, as Centrifugo does.

Everything the node consults is given to its constructor (``create_app`` builds them in order):
the channel rules, the RPC table, the roster it records connections in, the pain hooks it reports
to and the limits provider it reads for each new connection and each publish. Nothing is swapped
in afterwards; with the living core on, the hooks and the limits are its thyroid's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, ClassVar, Protocol

import orjson

from resonance_worker.domain.auth import TokenVerifier
from resonance_worker.domain.channels import ChannelRules, NamespaceOptions
from resonance_worker.domain.codes import Disconnect, Disconnects, ErrorCode
from resonance_worker.domain.features import (
    FEATURES_CHANNEL,
    OUTCOME_METHOD,
    FeatureBook,
    FeatureContext,
    FeatureSet,
    exposure_label,
)
from resonance_worker.domain.keys import SlotScope
from resonance_worker.domain.limits import ConnectionCounter, LimitKind
from resonance_worker.domain.netpolicy import AddressPolicy
from resonance_worker.domain.operations import (
    Connected,
    ConnectOp,
    Failed,
    HistoryOp,
    Op,
    Outcome,
    PeerInfo,
    PresenceOp,
    PresenceRefreshOp,
    PresenceStatsOp,
    PublishOp,
    RpcOp,
    SendOp,
    StreamState,
    SubscribeOp,
    UnsubscribeOp,
)
from resonance_worker.domain.origins import OriginPolicy
from resonance_worker.domain.positions import Position
from resonance_worker.domain.protocol import Codec
from resonance_worker.domain.requests.rules import RequestError
from resonance_worker.domain.requests.server import ApiDisconnectRequest, ApiUnsubscribeRequest, parse_control
from resonance_worker.domain.results import (
    HistoryResult,
    PresenceResult,
    PresenceStatsResult,
    PublishResult,
    RpcResult,
)
from resonance_worker.domain.session import Session, SessionConfig
from resonance_worker.domain.thyroid import PainSource
from resonance_worker.engines.base import (
    ClientInfo,
    Engine,
    Publication,
    StreamPosition,
    history_options,
)
from resonance_worker.errors import EngineError
from resonance_worker.living.limits import FixedLimits, LimitsProvider, limits_from_settings
from resonance_worker.living.pain import PainHooks
from resonance_worker.living.roster import Roster
from resonance_worker.log import bind_user
from resonance_worker.metrics import WorkerMetrics
from resonance_worker.rpc import RpcCall, RpcError, RpcHandler
from resonance_worker.settings import WorkerSettings
from resonance_worker.tracing import TRACER, Context, context_of
from resonance_worker.tracing import enabled as tracing_enabled
from resonance_worker.transport.timers import Timers

log = logging.getLogger("resonance.worker.node")

MessageHandler = Any  # async (RpcCall) -> None, for the `send` command


class Connection(Protocol):
    """What the node needs of a client connection (``transport.ws.Connection`` is the one)."""

    client_id: str
    ip: str
    session: Session
    transport: asyncio.Transport | None
    user_counted: bool
    """Whether the connection holds one of its user's connection slots (``ConnectionCounter``)."""
    trace_context: Context | None
    """The remote parent of this connection's spans (from its connect data), when it sent one."""

    def wake(self) -> None:
        """Something was queued or decided: flush it at the end of this loop iteration."""

    def flush(self) -> None:
        """Write what the session queued (called by the node once per loop iteration)."""

    def pump(self) -> None:
        """Start the operations the session asked for that need no ordering."""

    def disconnect(self, reason: Disconnect) -> None: ...

    def timer_due(self) -> None:
        """The session's deadline has come (called by the node's timers)."""


def engine_info(info: PeerInfo) -> ClientInfo:
    return ClientInfo(user=info.user, client=info.client, conn_info=info.conn_info, chan_info=info.chan_info)


CLEANUP_CONCURRENCY = 32
"""Closed connections whose engine clean-up (presence, leave, unsubscribe) runs at once."""


class Node:
    """Everything of one worker process that outlives a single connection."""

    _PERFORMERS: ClassVar[dict[type[Op], Performer]]
    """The performer of each operation type (filled in below the class)."""
    _FOLLOW_UPS: ClassVar[dict[type[Op], Callable[[Node, Connection, Any, bool], Awaitable[None]]]]
    """What follows a completed operation, told whether it took effect (below the class)."""
    _CONTROLS: ClassVar[dict[type, Callable[[Node, Any], None]]]
    """What each server API request relayed to every worker does here (below the class)."""

    def __init__(
        self,
        settings: WorkerSettings,
        engine: Engine,
        metrics: WorkerMetrics,
        verifier: TokenVerifier,
        *,
        rpc_methods: Mapping[str, RpcHandler],
        rules: ChannelRules | None = None,
        roster: Roster[Connection] | None = None,
        pain: PainHooks | None = None,
        limits: LimitsProvider | None = None,
        message_handler: MessageHandler | None = None,
    ) -> None:
        """``rules`` default to the settings' namespaces, ``roster`` to an empty one, ``pain`` to
        hooks that feel nothing and ``limits`` to the configured ones, fixed."""
        self.settings = settings
        self.started_at = time.time()
        """When this node was built (the server API's ``info`` reports its uptime)."""
        self.engine = engine
        self.metrics = metrics
        self.verifier = verifier
        self.rpc_methods: Mapping[str, RpcHandler] = dict(rpc_methods)
        self.message_handler = message_handler
        self.rules = rules or ChannelRules(settings.namespaces, settings.default_namespace)
        self.address_policy = AddressPolicy.from_lists(
            allow=settings.ip_allow,
            deny=settings.ip_deny,
            trusted_proxies=settings.trusted_proxies,
            header=settings.client_ip_header,
        )
        self.origin_policy = OriginPolicy.from_list(settings.allowed_origins)
        """Which browser origins may open a WebSocket and read the CORS endpoints."""
        self.pain = pain or PainHooks()
        """Where the node reports what hurts."""
        self.limits = limits or FixedLimits(limits_from_settings(settings))
        """Read for each new connection (its session's limits) and each publish (the user's rate)."""
        configured = settings.limits
        self.counter = ConnectionCounter(
            max_total=configured.max_connections,
            max_per_ip=configured.max_connections_per_ip,
            max_per_user=configured.max_connections_per_user,
        )
        self.fanout_resumed = asyncio.Event()
        """Set when the engine's fan-out came back after a break (``on_fanout_resumed``): the position
        check (``transport.positions``) looks at once, not at its next round."""
        self.slots: dict[str, list[tuple[SlotScope, str]]] = {}
        """The cluster-wide connection slots each connection holds (by client id): its address's, its
        user's. Counted in the engine, so a limit holds across every worker sharing it."""
        self.roster: Roster[Connection] = roster if roster is not None else Roster()
        self.connections = self.roster.connections
        self.by_user = self.roster.by_user
        self.local_subs: dict[str, dict[str, Connection]] = {}
        self._engine_lock: dict[str, list[Any]] = {}  # channel: [lock, holders and waiters]
        self._to_flush: list[Connection] = []
        self._cleanup_slots = asyncio.Semaphore(CLEANUP_CONCURRENCY)
        self.timers: Timers[Connection] = Timers()
        self._flush_scheduled = False
        self.features = FeatureBook()
        """The feature flags in force and what each connection was told (``transport.features``
        reloads them)."""

    @property
    def session_config(self) -> SessionConfig:
        """What a connection opened now gets (its rate limits tightened while the thyroid hurts)."""
        return self.limits.current().session

    @property
    def draining(self) -> bool:
        """Whether this worker is handing its clients over: it takes no new ones."""
        return self.roster.draining

    @draining.setter
    def draining(self, value: bool) -> None:
        self.roster.draining = value

    # -- writing -----------------------------------------------------------------------

    def schedule_flush(self, conn: Connection) -> None:
        """Write ``conn``'s queued frames at the end of this loop iteration: one
        callback for every connection touched, one write per connection."""
        self._to_flush.append(conn)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        conns, self._to_flush = self._to_flush, []
        for conn in conns:
            try:
                conn.flush()
            except Exception:  # one broken connection must not keep the others' frames back
                log.exception("writing to a connection failed", extra={"client": conn.client_id})

    # -- limits, logged and counted -------------------------------------------------

    def limit_tripped(self, kind: str, *, client: str = "", user: str = "", ip: str = "") -> None:
        self.metrics.limits.labels(kind=kind).inc()
        self.pain.feel(PainSource.LIMIT_HIT)
        log.warning("limit exceeded", extra={"limit": kind, "client": client, "user": user, "ip": ip})

    # -- engine events (EngineEventHandler) --------------------------------------------

    def on_publication(self, channel: str, publication: Publication, position: StreamPosition) -> None:
        subscribers = self.local_subs.get(channel)
        if not subscribers:
            return
        if publication.time_ms:
            self.metrics.delivery_latency.observe(max(0.0, time.time() - publication.time_ms / 1000))
        if tracing_enabled():
            with TRACER.start_as_current_span(
                "fanout", attributes={"resonance.channel": channel, "resonance.subscribers": len(subscribers)}
            ):
                self._fan_out(channel, subscribers, publication, position)
        else:
            self._fan_out(channel, subscribers, publication, position)

    def _fan_out(
        self,
        channel: str,
        subscribers: Mapping[str, Connection],
        publication: Publication,
        position: StreamPosition,
    ) -> None:
        offset, epoch = position.offset, position.epoch
        # Encoded once per codec in use (subscribers of one codec in a row share the last frame).
        frames: dict[Codec, bytes | None] = {}
        codec: Codec | None = None
        frame: bytes | None = None
        refused = 0
        for conn in list(subscribers.values()):
            session = conn.session
            if session.codec is not codec:
                codec = session.codec
                if codec in frames:
                    frame = frames[codec]
                else:
                    frame = frames[codec] = codec.publication_push(channel, publication)
            if frame is None:
                refused += 1
                session.close(Disconnects.INAPPROPRIATE_PROTOCOL)
            else:
                session.deliver_publication(channel, frame, offset, epoch)
            conn.wake()
        self.metrics.publications.inc(len(subscribers) - refused)
        if refused:
            self.metrics.protocol_errors.labels(encoding="json", kind="unencodable").inc(refused)
            log.warning(
                "publication data is not JSON: its JSON subscribers here are disconnected (3506)",
                extra={"channel": channel, "offset": offset, "disconnected": refused},
            )

    def on_join(self, channel: str, info: ClientInfo) -> None:
        self._join_leave(channel, lambda codec: codec.join_push(channel, info))

    def on_leave(self, channel: str, info: ClientInfo) -> None:
        self._join_leave(channel, lambda codec: codec.leave_push(channel, info))

    def _join_leave(self, channel: str, encode: Callable[[Codec], bytes]) -> None:
        # Every member is asked, but most never want join/leave pushes (a client
        # asks for them when subscribing): only those that queued one are woken.
        frames: dict[Codec, bytes] = {}
        for conn in list(self.local_subs.get(channel, {}).values()):
            session = conn.session
            frame = frames.get(session.codec)
            if frame is None:
                frame = frames[session.codec] = encode(session.codec)
            queued = session.queued_bytes
            session.deliver_join_leave(channel, frame)
            if session.queued_bytes != queued or session.closed:
                conn.wake()

    def on_fanout_resumed(self) -> None:
        self.fanout_resumed.set()

    def on_control(self, payload: bytes) -> None:
        """A server API request relayed to every worker (``control_message``), done here."""
        try:
            request = parse_control(payload)
        except RequestError as exc:
            log.warning("malformed control message ignored", extra={"error": exc.message})
            return
        self._CONTROLS[type(request)](self, request)

    def _disconnect_user(self, request: ApiDisconnectRequest) -> None:
        reason = Disconnect(request.code, request.reason)
        for conn in list(self.by_user.get(request.user, ())):
            conn.disconnect(reason)

    def _unsubscribe_user(self, request: ApiUnsubscribeRequest) -> None:
        for conn in list(self.by_user.get(request.user, ())):
            conn.session.server_unsubscribe(request.channel)
            conn.pump()

    # -- local subscriptions -----------------------------------------------------------

    # Joining or leaving a channel that others on this node still hold is a dict
    # operation. Only the first join and the last leave talk to the engine; a
    # lock (per channel, only while one is in flight) keeps those two in order.

    async def add_local(self, channel: str, conn: Connection) -> None:
        subscribers = self.local_subs.get(channel)
        if subscribers is not None and channel not in self._engine_lock:
            subscribers[conn.client_id] = conn
            return
        async with self._channel_lock(channel):
            subscribers = self.local_subs.get(channel)
            if subscribers is None:
                subscribers = self.local_subs[channel] = {}
                try:
                    await self.engine.subscribe(channel)
                except BaseException:
                    del self.local_subs[channel]
                    raise
            subscribers[conn.client_id] = conn

    async def remove_local(self, channel: str, conn: Connection) -> None:
        subscribers = self.local_subs.get(channel)
        if subscribers is None or subscribers.pop(conn.client_id, None) is None or subscribers:
            return
        async with self._channel_lock(channel):
            if self.local_subs.get(channel) is subscribers and not subscribers:
                del self.local_subs[channel]
                await self.engine.unsubscribe(channel)

    @contextlib.asynccontextmanager
    async def _channel_lock(self, channel: str) -> AsyncIterator[None]:
        entry = self._engine_lock.get(channel)
        if entry is None:
            entry = self._engine_lock[channel] = [asyncio.Lock(), 0]
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if not entry[1]:
                del self._engine_lock[channel]

    # -- connections ---------------------------------------------------------------------

    def register(self, conn: Connection) -> None:
        self.connections[conn.client_id] = conn
        self.metrics.connections.set(len(self.connections))

    def register_user(self, conn: Connection) -> None:
        self.by_user.setdefault(conn.session.user, set()).add(conn)

    async def forget(self, conn: Connection) -> None:
        """Undo everything a closed connection left: subscriptions, presence, counts."""
        self.pain.disconnected(conn.session.close_reason)
        self.connections.pop(conn.client_id, None)
        self.features.forget(conn.client_id)
        self.metrics.connections.set(len(self.connections))
        users = self.by_user.get(conn.session.user)
        if users is not None:
            users.discard(conn)
            if not users:
                del self.by_user[conn.session.user]
        if conn.user_counted:
            self.counter.release_user(conn.session.user)
            conn.user_counted = False
        await self.release_slots(conn.client_id)
        ops = conn.session.cleanup_ops()
        if ops:
            # When thousands leave at once, their engine calls wait here, not in
            # the engine's pool (where they would time out after its deadline,
            # open its circuit and fail the calls of everyone still connected).
            async with self._cleanup_slots:
                for op in ops:
                    await self.perform(conn, op)

    # -- feature flags ---------------------------------------------------------------------------

    @staticmethod
    def feature_context(conn: Connection) -> FeatureContext:
        session = conn.session
        return FeatureContext(
            user=session.user,
            tenant=session.tenant,
            platform=session.platform,
            claims=session.claims,
            client=conn.client_id,
        )

    def _gated(self, conn: Connection, channel: str) -> Failed | None:
        """103 naming the flag when a flag gates ``channel``'s namespace and is off for ``conn``."""
        features = self.features.current
        if not features.gated_namespaces:  # the common case: nothing to evaluate
            return None
        flag = features.refuses_channel(channel, self.feature_context(conn))
        return (
            None
            if flag is None
            else Failed(ErrorCode.PERMISSION_DENIED, f"{channel} needs the feature {flag!r}")
        )

    def _tell_features(self, conn: Connection) -> dict[str, Any]:
        """Evaluate ``conn``'s flags, count the values new to it (exposures) and return them."""
        payload, exposed = self.features.tell(conn.client_id, self.feature_context(conn))
        for name, value in exposed.items():
            self.metrics.feature_exposures.labels(flag=name, variant=exposure_label(value)).inc()
        return payload

    def push_features(self, conn: Connection) -> None:
        """Send ``conn`` its evaluated flags on ``system:features`` (only to it: they are its own)."""
        session = conn.session
        publication = Publication(orjson.dumps(self._tell_features(conn)), time_ms=int(time.time() * 1000))
        frame = session.codec.publication_push(FEATURES_CHANNEL, publication)
        if frame is not None:
            session.deliver_publication(FEATURES_CHANNEL, frame, 0, "")
            conn.wake()

    def apply_features(self, features: FeatureSet) -> int:
        """Put ``features`` in force and tell every subscriber of ``system:features`` here its
        evaluated flags; returns how many were told (0 when the set did not change)."""
        if not self.features.replace(features):
            return 0
        self.metrics.feature_flags.set(len(features.flags))
        subscribers = list(self.local_subs.get(FEATURES_CHANNEL, {}).values())
        for conn in subscribers:
            if not conn.session.closed:
                self.push_features(conn)
        return len(subscribers)

    def _report_outcome(self, conn: Connection, op: RpcOp) -> Outcome:
        """``features.outcome {"outcome": name}``: an outcome the client saw (an answer chosen, a
        screen left), counted for every flag that lists it, under the variant the client was told."""
        data = None if op.data is None else orjson.loads(op.data)
        outcome = data.get("outcome") if isinstance(data, dict) else None
        if not isinstance(outcome, str):
            return Failed(ErrorCode.BAD_REQUEST, 'features.outcome takes {"outcome": "<name>"}')
        features = self.features.current
        flags = features.outcome_flags(outcome)
        if not flags:
            return Failed(ErrorCode.BAD_REQUEST, f"no feature flag counts the outcome {outcome[:64]!r}")
        return RpcResult(orjson.dumps({"counted": self._count_outcome(conn, features, outcome)}))

    def _count_outcome(self, conn: Connection, features: FeatureSet, method: str) -> list[str]:
        """Count ``method`` as an outcome of the flags listing it; returns those counted."""
        flags = features.outcome_flags(method)
        if not flags:
            return []
        counted = []
        told = self.features.told(conn.client_id)
        for name in flags:
            value = told.get(name)
            if value is not None:  # "off" too: those outside a rollout are its control group
                self.metrics.feature_outcomes.labels(
                    flag=name, variant=exposure_label(value), outcome=method
                ).inc()
                counted.append(name)
        return counted

    # -- cluster-wide connection limits ------------------------------------------------------

    async def hold_slot(self, conn: Connection, scope: SlotScope, subject: str, limit: int) -> bool:
        """Take one of ``limit`` slots of an address or a user across the cluster for ``conn``
        (0: unlimited); False when all are held. While the engine fails, the per-worker count
        (``ConnectionCounter``) is the only one that holds: admitted, and the pain is felt."""
        if not limit or not subject:
            return True
        try:
            held = await self.engine.take_slot(
                scope, subject, conn.client_id, limit=limit, ttl_seconds=self.settings.limits.slot_ttl_seconds
            )
        except EngineError as exc:
            log.warning("connection slot not counted", extra={"scope": scope.value, "error": str(exc)})
            self.pain.engine_failed(exc)
            return True
        if held:
            self.slots.setdefault(conn.client_id, []).append((scope, subject))
        return held

    async def release_slots(self, client_id: str) -> None:
        """Free the slots a closed connection held (one not freed expires with its TTL)."""
        for scope, subject in self.slots.pop(client_id, ()):
            try:
                await self.engine.release_slot(scope, subject, client_id)
            except EngineError as exc:
                log.info("connection slot left to expire", extra={"scope": scope.value, "error": str(exc)})

    async def refresh_slots(self) -> None:
        """Keep every slot this worker's connections hold for another TTL (called a few times per TTL)."""
        held = [
            (scope, subject, client_id)
            for client_id, slots in list(self.slots.items())
            for scope, subject in slots
        ]
        if held:
            await self.engine.refresh_slots(held, ttl_seconds=self.settings.limits.slot_ttl_seconds)

    # -- operations -------------------------------------------------------------------------
    # One performer per operation type (``_PERFORMERS``): it does the engine or application
    # work and returns the outcome (``resonance_worker.domain.operations``), or None for an
    # operation that needs no answer. ``perform`` completes the operation with it, once.

    async def perform(self, conn: Connection, op: Op) -> None:
        """Carry out one operation of ``conn``'s session and complete it with its outcome;
        then what follows a connect or subscribe (``_FOLLOW_UPS``); then wake ``conn``.
        Traced, each operation is one span (``connect``, ``subscribe``, ``publish``, ``rpc`` …)."""
        if not tracing_enabled():
            await self._perform(conn, op)
            return
        if isinstance(op, ConnectOp):
            conn.trace_context = context_of(op.traceparent)
        attributes: dict[str, str] = {"resonance.client": conn.client_id}
        if conn.session.user:
            attributes["resonance.user"] = conn.session.user
        channel = getattr(op, "channel", None)
        if isinstance(channel, str):
            attributes["resonance.channel"] = channel
        if isinstance(op, RpcOp):
            attributes["rpc.method"] = op.rpc_method
        name = f"rpc {op.rpc_method}" if isinstance(op, RpcOp) else op.method
        with TRACER.start_as_current_span(name, context=conn.trace_context, attributes=attributes):
            await self._perform(conn, op)

    async def _perform(self, conn: Connection, op: Op) -> None:
        session = conn.session
        try:
            outcome = await self._PERFORMERS[type(op)](self, conn, op)
            if outcome is not None:
                took = session.complete(op, outcome, time.time())
                follow_up = self._FOLLOW_UPS.get(type(op))
                if follow_up is not None:
                    await follow_up(self, conn, op, took)
        except EngineError as exc:
            log.error(
                "engine operation failed",
                extra={"op": op.method, "client": conn.client_id, "error": str(exc)},
            )
            session.complete(op, Failed(ErrorCode.INTERNAL), time.time())
            self.pain.engine_failed(exc)
        conn.wake()

    # Reads shared with the server API.

    async def read_presence(self, channel: str) -> PresenceResult:
        return PresenceResult(await self.engine.presence(channel))

    async def read_presence_stats(self, channel: str) -> PresenceStatsResult:
        return PresenceStatsResult(*await self.engine.presence_stats(channel))

    async def read_history(
        self, channel: str, options: NamespaceOptions, since: Position | None, limit: int, reverse: bool
    ) -> HistoryResult:
        pubs, top = await self.engine.history(
            channel,
            since=StreamPosition(*since) if since is not None else None,
            limit=limit,
            reverse=reverse,
            meta_ttl_seconds=options.history_meta_ttl_seconds,
        )
        return HistoryResult(pubs, top.epoch, top.offset)

    async def _stream_state(self, conn: Connection, op: SubscribeOp) -> StreamState:
        await self.add_local(op.channel, conn)
        presence_ttl = self.settings.presence_ttl_seconds
        if not (op.positioned or op.recoverable):
            if op.options.presence:
                await self.engine.add_presence(op.channel, engine_info(op.info), ttl_seconds=presence_ttl)
            return StreamState(0, "")
        since = StreamPosition(*op.since) if op.since is not None else None
        limit = 0 if since is None else -1
        meta_ttl = op.options.history_meta_ttl_seconds
        if op.options.presence:
            # Presence and the stream's state in one engine call: one script on the Redis engine.
            pubs, top = await self.engine.history_with_presence(
                op.channel,
                engine_info(op.info),
                presence_ttl_seconds=presence_ttl,
                since=since,
                limit=limit,
                meta_ttl_seconds=meta_ttl,
            )
        else:
            pubs, top = await self.engine.history(
                op.channel, since=since, limit=limit, meta_ttl_seconds=meta_ttl
            )
        return StreamState(top.offset, top.epoch, pubs)

    async def _undo_subscribe(self, conn: Connection, op: SubscribeOp) -> None:
        await self.remove_local(op.channel, conn)
        if op.options.presence:
            await self.engine.remove_presence(op.channel, conn.client_id)

    async def _subscribe(self, conn: Connection, op: SubscribeOp) -> Outcome:
        refused = self._gated(conn, op.channel)
        if refused is not None:
            return refused
        try:
            return await self._stream_state(conn, op)
        except EngineError:
            await self._undo_subscribe(conn, op)
            raise

    async def _subscribed(self, conn: Connection, op: SubscribeOp, took: bool) -> None:
        """Announce a subscription in place, or undo what was done for a refused one."""
        if took:
            if op.options.join_leave:
                await self.engine.publish_join(op.channel, engine_info(op.info))
            if op.channel == FEATURES_CHANNEL:
                self.push_features(conn)  # what changed between its connect and this subscribe
        else:
            await self._undo_subscribe(conn, op)

    async def _connect(self, conn: Connection, op: ConnectOp) -> Outcome:
        if not self.counter.admit_user(op.user):
            self.limit_tripped(LimitKind.CONNECTIONS_PER_USER, client=conn.client_id, user=op.user)
            return Failed(Disconnects.CONNECTION_LIMIT)
        conn.user_counted = True
        if not await self.hold_slot(
            conn, SlotScope.USER, op.user, self.settings.limits.max_connections_per_user
        ):
            self.limit_tripped(LimitKind.CONNECTIONS_PER_USER, client=conn.client_id, user=op.user)
            return Failed(Disconnects.CONNECTION_LIMIT)
        streams: dict[str, StreamState] = {}
        try:
            for sub_op in op.subscriptions:
                streams[sub_op.channel] = await self._stream_state(conn, sub_op)
        except EngineError:
            for sub_op in op.subscriptions:
                await self._undo_subscribe(conn, sub_op)
            raise
        if self.settings.features_file is None:
            return Connected(streams)
        return Connected(streams, orjson.dumps({"features": self._tell_features(conn)}))

    async def _connected(self, conn: Connection, op: ConnectOp, took: bool) -> None:
        """Register a connection that stayed open and announce its server-side subscriptions."""
        if conn.session.closed:
            return
        self.register_user(conn)
        bind_user(op.user)
        log.info("client connected", extra={"client": conn.client_id, "user": op.user, "ip": conn.ip})
        for sub_op in op.subscriptions:
            if sub_op.options.join_leave:
                await self.engine.publish_join(sub_op.channel, engine_info(sub_op.info))

    async def _unsubscribe(self, conn: Connection, op: UnsubscribeOp) -> None:
        await self.remove_local(op.channel, conn)
        if op.options.presence and op.options.join_leave:
            # Presence removed and the leave published in one engine call: one script on Redis.
            await self.engine.leave_with_presence(op.channel, engine_info(op.info))
        elif op.options.presence:
            await self.engine.remove_presence(op.channel, op.info.client)
        elif op.options.join_leave:
            await self.engine.publish_leave(op.channel, engine_info(op.info))

    async def _refresh_presence(self, conn: Connection, op: PresenceRefreshOp) -> None:
        for channel, info in op.entries:
            await self.engine.add_presence(
                channel, engine_info(info), ttl_seconds=self.settings.presence_ttl_seconds
            )

    async def _publish(self, conn: Connection, op: PublishOp) -> Outcome:
        refused = self._gated(conn, op.channel)
        if refused is not None:
            return refused
        limits = self.limits.current()
        if limits.user_publish_rate > 0:
            wait = await self.engine.take_token(
                f"publish:{op.info.user or op.info.client}",
                rate_per_second=limits.user_publish_rate,
                burst=limits.user_publish_burst,
            )
            if wait > 0:
                self.limit_tripped(LimitKind.USER_RATE, client=conn.client_id, user=op.info.user)
                return Failed(ErrorCode.TOO_MANY_REQUESTS)
        if tracing_enabled():
            with TRACER.start_as_current_span("engine.publish", attributes={"resonance.channel": op.channel}):
                await self.engine.publish(
                    op.channel, op.data, info=engine_info(op.info), history=history_options(op.options)
                )
        else:
            await self.engine.publish(
                op.channel, op.data, info=engine_info(op.info), history=history_options(op.options)
            )
        return PublishResult()

    async def _presence(self, conn: Connection, op: PresenceOp) -> Outcome:
        return await self.read_presence(op.channel)

    async def _presence_stats(self, conn: Connection, op: PresenceStatsOp) -> Outcome:
        return await self.read_presence_stats(op.channel)

    async def _history(self, conn: Connection, op: HistoryOp) -> Outcome:
        return await self.read_history(op.channel, op.options, op.since, op.limit, op.reverse)

    async def _rpc(self, conn: Connection, op: RpcOp) -> Outcome:
        if op.rpc_method == OUTCOME_METHOD and OUTCOME_METHOD not in self.rpc_methods:
            return self._report_outcome(conn, op)
        handler = self.rpc_methods.get(op.rpc_method)
        if handler is None:
            return Failed(ErrorCode.METHOD_NOT_FOUND)
        features = self.features.current
        if op.rpc_method in features.gated_rpc:
            flag = features.refuses_rpc(op.rpc_method, self.feature_context(conn))
            if flag is not None:
                return Failed(ErrorCode.PERMISSION_DENIED, f"{op.rpc_method} needs the feature {flag!r}")
        if op.rpc_method in features.outcomes:
            self._count_outcome(conn, features, op.rpc_method)
        data = None if op.data is None else orjson.loads(op.data)
        try:
            result = await handler(RpcCall(op.rpc_method, data, op.user, op.client, op.consent))
        except RpcError as exc:
            return Failed(exc.code, exc.message)
        except Exception:
            log.exception("rpc handler failed", extra={"method": op.rpc_method, "client": op.client})
            self.pain.feel(PainSource.SERVER_ERROR)
            return Failed(ErrorCode.INTERNAL)
        return RpcResult(None if result is None else orjson.dumps(result))

    async def _send(self, conn: Connection, op: SendOp) -> Outcome | None:
        if self.message_handler is None:
            return Failed(Disconnects.NOT_AVAILABLE)
        data = None if op.data is None else orjson.loads(op.data)
        await self.message_handler(RpcCall("send", data, op.user, op.client))
        return None


Performer = Callable[[Node, "Connection", Any], Awaitable[Outcome | None]]

Node._PERFORMERS = {
    SubscribeOp: Node._subscribe,
    ConnectOp: Node._connect,
    UnsubscribeOp: Node._unsubscribe,
    PublishOp: Node._publish,
    PresenceOp: Node._presence,
    PresenceStatsOp: Node._presence_stats,
    HistoryOp: Node._history,
    RpcOp: Node._rpc,
    SendOp: Node._send,
    PresenceRefreshOp: Node._refresh_presence,
}
Node._FOLLOW_UPS = {SubscribeOp: Node._subscribed, ConnectOp: Node._connected}
Node._CONTROLS = {ApiDisconnectRequest: Node._disconnect_user, ApiUnsubscribeRequest: Node._unsubscribe_user}
