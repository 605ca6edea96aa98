"""The living core wired into the worker: thyroid, emotional states, resonance rooms, biometrics.

The algorithms are pure (``resonance_worker.domain``); this module is their
I/O shell: it feeds them the worker's pain signals, RPC calls and clock, and
publishes what they say on channels. See docs/living-core.md, "Wiring", and
docs/protocol.md for the RPC methods, channels and codes.

- Thyroid: the node reports every error (:class:`PainHooks`); a loop evaluates
  the thyroid, shares this worker's :class:`PainSnapshot` through the engine
  (a presence entry with a TTL in an internal channel, so a dead worker's pain
  expires) and merges the peers'; the adaptations are applied (rate limits of
  new connections and publishes, shedding new WebSocket connections with HTTP
  503 + ``Retry-After``, circuits); the status goes to ``GET /thyroid/status``,
  the ``system:thyroid`` channel and the ``resonance_thyroid_*`` metrics.
- ``state.report``: a validated, smoothed emotional state, shared in the
  person's rooms and appended to the event log.
- ``room.join`` / ``room.leave``: a :class:`RoomMonitor` per room, ticked at
  a steady rate; resonance, patterns and reflective questions are published
  on ``room:<id>``.
- ``bio.push``: batches of PPG or camera RGB (+ motion) go through a
  per-person :class:`BiometricStream` in a thread (never on the event loop);
  readings are returned, published on ``bio:#<user>``, and feed the state
  (arousal) and the rooms (heart rate).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import logging
import math
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from aiohttp import web
from prometheus_client import Counter, Gauge, Histogram

from resonance_worker.domain import events
from resonance_worker.domain.biometrics import BiometricsError, BiometricStream, StreamConfig
from resonance_worker.domain.channels import NamespaceOptions
from resonance_worker.domain.circuit import CircuitBreaker
from resonance_worker.domain.codes import Disconnect, Disconnects, ErrorCode
from resonance_worker.domain.emotion import (
    EmotionalState,
    EmotionReportError,
    EmotionSmoother,
    SmoothedState,
    StateSource,
    parse_report,
)
from resonance_worker.domain.insights import ask, from_room_pattern
from resonance_worker.domain.resonance import (
    HeartRateSample,
    MemberState,
    ResonanceConfig,
    ResonancePublisher,
    RoomMonitor,
    RoomTick,
)
from resonance_worker.domain.selfhood import (
    BodySample,
    SelfReport,
    StatePoint,
    harmony,
    home_state,
    pair_reports,
    self_understanding,
)
from resonance_worker.domain.thyroid import (
    DisconnectStormDetector,
    PainSnapshot,
    PainSource,
    Thyroid,
    ThyroidConfig,
    ThyroidState,
    ThyroidUpdate,
)
from resonance_worker.engines.base import ClientInfo
from resonance_worker.engines.degraded import innermost
from resonance_worker.engines.redis import RedisEngine
from resonance_worker.errors import EngineError
from resonance_worker.eventlog import EventLog, EventLogError, MemoryEventLog, Retention
from resonance_worker.living_settings import LivingSettings
from resonance_worker.rpc import RpcCall, RpcError, RpcHandler
from resonance_worker.transport.node import Node, PainHooks, history_options
from resonance_worker.transport.ws import client_ip

if TYPE_CHECKING:
    from resonance_worker.transport.living_graph import LivingGraph
    from resonance_worker.transport.ws import Connection

log = logging.getLogger("resonance.worker.living")

THYROID_CHANNEL = "system:thyroid"
PAIN_CHANNEL = "__living:thyroid"
"""Internal channel whose presence entries carry each worker's pain snapshot (no client can name it)."""
ROOM_NAMESPACE = "room"
BIO_NAMESPACE = "bio"
ROOM_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_BATCH_ROWS = 4096
REFLECT_HISTORY = 2000
"""Self-reports and body samples kept per person for ``self.reflect`` (the newest)."""
HARMONY_WINDOW_S = 3600.0
FORGET_AFTER_S = 300.0
ROOM_STATE_PREFIX = "__living:room:"
"""Internal channels whose presence entries carry each worker's room members (no client can name them)."""
SHARE_HORIZON_S = 10.0
"""How far back a member's shared entry carries heart rates and states (several ticks, so none is missed)."""
SHARED_HEART_RATES = 64
SHARED_STATES = 32
"""A person with no connection on this worker this long is forgotten here (stream, history, state)."""
BIO_KINDS = ("ppg", "rgb")


def living_namespaces() -> dict[str, NamespaceOptions]:
    """The namespaces the living core publishes on; added unless the settings define them."""
    return {
        "system": NamespaceOptions(allow_subscribe_for_client=True),
        ROOM_NAMESPACE: NamespaceOptions(
            presence=True,
            join_leave=True,
            history_size=50,
            history_ttl_seconds=300.0,
            allow_recovery=True,
            allow_subscribe_for_client=True,
            allow_presence_for_subscriber=True,
            allow_history_for_subscriber=True,
        ),
        BIO_NAMESPACE: NamespaceOptions(
            history_size=100,
            history_ttl_seconds=300.0,
            allow_recovery=True,
            allow_user_limited_channels=True,
            allow_subscribe_for_client=True,
            allow_history_for_subscriber=True,
        ),
    }


def room_channel(room: str) -> str:
    return f"{ROOM_NAMESPACE}:{room}"


def bio_channel(user: str) -> str:
    return f"{BIO_NAMESPACE}:#{user}"


# ----------------------------------------------------------------------------- pain mapping

_AUTH_ERRORS = {ErrorCode.UNAUTHORIZED, ErrorCode.PERMISSION_DENIED, ErrorCode.TOKEN_EXPIRED}
# Counted elsewhere: 100 (engine failure → engine_timeout), 106 and 111 (limits → limit_hit).
_NOT_PROTOCOL = {ErrorCode.INTERNAL, ErrorCode.LIMIT_EXCEEDED, ErrorCode.TOO_MANY_REQUESTS}
_AUTH_DISCONNECTS = {3500, 3507}
_PROTOCOL_DISCONNECTS = {3501, 3502, 3509, 1009}


def pain_of_error(code: int) -> PainSource | None:
    """What an error reply to a client says about the worker's health."""
    if code in _AUTH_ERRORS:
        return PainSource.AUTH_FAILURE
    if code in _NOT_PROTOCOL:
        return None
    return PainSource.PROTOCOL_ERROR


def pain_of_disconnect(reason: Disconnect | None) -> PainSource | None:
    if reason is None:
        return None
    if reason.code in _AUTH_DISCONNECTS:
        return PainSource.AUTH_FAILURE
    if reason.code in _PROTOCOL_DISCONNECTS:
        return PainSource.PROTOCOL_ERROR
    return None


# ----------------------------------------------------------------------------- who caused the pain


class PainOrigin:
    """The WebSocket request a pain signal came from: its identities for the thyroid's budget.

    Set in a context variable by the living core's middleware around ``/connection/websocket``.
    Everything a connection does runs in that request's task or in tasks and timers started from
    it (which copy the context), so the node's pain hooks need no extra argument to say who hurt.
    """

    _ids = itertools.count(1)

    def __init__(self, ip: str, transport: object) -> None:
        self.ip = ip
        self.transport = transport
        self.number = next(PainOrigin._ids)
        self.cut_off = False
        self._conn: Connection | None = None
        self._looked = False

    def connection(self, node: Node) -> Connection | None:
        """This request's connection in ``node.connections`` (searched once, newest first)."""
        if not self._looked and self.transport is not None:
            self._looked = True
            for conn in reversed(node.connections.values()):
                if conn.transport is self.transport:
                    self._conn = conn
                    break
        return self._conn

    def identities(self, node: Node) -> list[str]:
        keys = [f"conn:{self.number}"]
        if self.ip:
            keys.append(f"ip:{self.ip}")
        conn = self.connection(node)
        if conn is not None and conn.session.user:
            keys.append(f"user:{conn.session.user}")
        return keys


_ORIGIN: contextvars.ContextVar[PainOrigin | None] = contextvars.ContextVar("pain_origin", default=None)


@contextlib.contextmanager
def _without_origin() -> Iterator[None]:
    token = _ORIGIN.set(None)
    try:
        yield
    finally:
        _ORIGIN.reset(token)


# ----------------------------------------------------------------------------- rooms and streams


@dataclass
class _Room:
    """A room as this worker sees it: its own members' connections, and the members of the other
    workers (learnt from the room's shared entries) mirrored into one monitor."""

    monitor: RoomMonitor
    members: dict[str, str] = field(default_factory=dict)
    """client id → user, for the connections on this worker."""
    remote: dict[str, str] = field(default_factory=dict)
    """user → worker, for members connected only to other workers."""
    seen: dict[str, tuple[float, float]] = field(default_factory=dict)
    """remote user → times of the last heart rate and state taken from their entries."""
    workers: frozenset[str] = frozenset()
    """Workers with members in the room (as of the last read), this one included."""
    leader_since: float | None = None

    def users(self) -> list[str]:
        """Everyone in the room, on any worker."""
        return sorted(set(self.members.values()) | set(self.remote))


def _shared_entry(raw: bytes) -> tuple[str, str, list[HeartRateSample], list[tuple[float, MemberState]]]:
    """A member's shared entry: worker, user, recent heart rates and states. ValueError when malformed."""
    try:
        entry = orjson.loads(raw)
        worker, user = entry["worker"], entry["user"]
        if not (isinstance(worker, str) and isinstance(user, str) and user):
            raise ValueError("worker and user must be strings")
        heart = [HeartRateSample(float(t), float(bpm)) for t, bpm in entry["hr"]]
        states = [(float(t), MemberState(user, float(v), float(a))) for t, v, a in entry["states"]]
    except (KeyError, TypeError) as exc:  # ResonanceInputError and JSON errors are ValueErrors
        raise ValueError(f"malformed room entry: {exc!r}") from None
    heart.sort(key=lambda sample: sample.t)
    states.sort(key=lambda item: item[0])
    return worker, user, heart, states


@dataclass
class _Bio:
    stream: BiometricStream
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def _rows(value: object, name: str, width: int | None) -> np.ndarray[Any, np.dtype[np.float64]]:
    """A JSON list of numbers (``null`` = a missing value) or of ``width``-number rows, as floats."""
    if not isinstance(value, list) or not value:
        raise RpcError(ErrorCode.BAD_REQUEST, f"{name} must be a non-empty list")
    if len(value) > MAX_BATCH_ROWS:
        raise RpcError(ErrorCode.BAD_REQUEST, f"{name}: at most {MAX_BATCH_ROWS} samples per batch")
    try:
        array = np.array(value, dtype=np.float64)  # null → nan
    except (TypeError, ValueError):
        raise RpcError(ErrorCode.BAD_REQUEST, f"{name} must hold only numbers or null") from None
    expected = (len(value),) if width is None else (len(value), width)
    if array.shape != expected:
        shape = "numbers" if width is None else f"rows of {width} numbers"
        raise RpcError(ErrorCode.BAD_REQUEST, f"{name} must be a list of {shape}")
    return array


# GREEN is only a benchmark baseline: a lamp's flicker fools it at full quality (docs/biometrics.md).
FACE_METHODS = ("pos", "chrom")


def _parse_batch(data: object) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise RpcError(ErrorCode.BAD_REQUEST, "bio.push takes a JSON object")
    unknown = sorted(set(data) - {"kind", "t", "values", "motion", "region", "face_method"})
    if unknown:
        raise RpcError(ErrorCode.BAD_REQUEST, f"{unknown[0]}: unknown field")
    kind = data.get("kind", "ppg")
    if kind not in BIO_KINDS:
        raise RpcError(ErrorCode.BAD_REQUEST, "kind must be 'ppg' (raw samples) or 'rgb' (frame means)")
    region = data.get("region", "finger")
    if region not in ("finger", "face"):
        raise RpcError(ErrorCode.BAD_REQUEST, "region must be 'finger' or 'face'")
    face_method = data.get("face_method", "pos")
    if face_method not in FACE_METHODS:
        raise RpcError(ErrorCode.BAD_REQUEST, "face_method must be 'pos' or 'chrom'")
    times = _rows(data.get("t"), "t", None)
    values = _rows(data.get("values"), "values", 3 if kind == "rgb" else None)
    if len(values) != len(times):
        raise RpcError(ErrorCode.BAD_REQUEST, "t and values must have the same length")
    motion = data.get("motion")
    parsed: dict[str, Any] = {
        "kind": kind,
        "region": region,
        "face_method": face_method,
        "t": times,
        "values": values,
        "motion": None,
    }
    if motion is not None:
        if not isinstance(motion, dict) or set(motion) - {"t", "accel", "gyro"}:
            raise RpcError(ErrorCode.BAD_REQUEST, "motion must be an object with t, accel and optional gyro")
        motion_t = _rows(motion.get("t"), "motion.t", None)
        accel = _rows(motion.get("accel"), "motion.accel", 3)
        gyro = _rows(motion["gyro"], "motion.gyro", 3) if motion.get("gyro") is not None else None
        if len(accel) != len(motion_t) or (gyro is not None and len(gyro) != len(motion_t)):
            raise RpcError(ErrorCode.BAD_REQUEST, "motion.t, accel and gyro must have the same length")
        parsed["motion"] = (motion_t, accel, gyro)
    return parsed


def _push(stream: BiometricStream, batch: dict[str, Any]) -> tuple[list[dict[str, Any]], float]:
    """Runs in a worker thread: one batch through the stream; the readings and the CPU time it took."""
    started = time.thread_time()
    if batch["motion"] is not None:
        stream.push_motion(*batch["motion"])
    push = stream.push_rgb if batch["kind"] == "rgb" else stream.push_ppg
    readings = [reading.to_dict() for reading in push(batch["t"], batch["values"])]
    return readings, time.thread_time() - started


# ----------------------------------------------------------------------------- the service


class Living(PainHooks):
    """Everything of the living core one worker holds."""

    def __init__(
        self,
        node: Node,
        settings: LivingSettings,
        *,
        event_log: EventLog | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.node = node
        self.settings = settings
        self.clock = clock
        self.origin = node.session_config.node
        now = clock()
        self.thyroid = Thyroid(
            ThyroidConfig(
                threshold=settings.thyroid_threshold,
                half_life_s=settings.thyroid_half_life_seconds,
                min_dwell_s=settings.thyroid_min_dwell_seconds,
                overload_factor=settings.thyroid_overload_factor,
                identity_share=settings.thyroid_identity_share,
                flood_factor=settings.thyroid_flood_factor,
                circuit_only=frozenset(PainSource(name) for name in settings.thyroid_circuit_only_sources),
            ),
            origin=self.origin,
            now=now,
        )
        self.storms = DisconnectStormDetector(
            settings.disconnect_storm_count, settings.disconnect_storm_window_seconds
        )
        self.circuits = {name: CircuitBreaker() for name in ("redis", "neo4j")}
        self.smoother = EmotionSmoother(settings.state_half_life_seconds)
        self.rooms: dict[str, _Room] = {}
        self.streams: dict[str, _Bio] = {}
        self.event_log: EventLog = event_log or MemoryEventLog(retention=Retention(max_len=100_000))
        self.resonance_config = ResonanceConfig(
            window_s=settings.room_window_seconds,
            min_overlap_s=min(settings.room_min_overlap_seconds, settings.room_window_seconds),
        )
        self._base_session_config = node.session_config
        self._base_settings = node.settings
        self._applied_factor = 1.0
        self._seq = 0
        self._appending: set[asyncio.Future[None]] = set()
        self.graph: LivingGraph | None = None
        # Per person: (session, report) and body samples, for self.reflect.
        self._reports: dict[str, deque[tuple[str, SelfReport]]] = {}
        self._body: dict[str, deque[BodySample]] = {}
        self._last_bpm: dict[str, float] = {}
        # Per person: recent heart rates (t, bpm) and states (t, valence, arousal), shared with the
        # other workers that host members of the person's rooms.
        self._recent_heart: dict[str, deque[tuple[float, float]]] = {}
        self._recent_states: dict[str, deque[tuple[float, float, float]]] = {}
        self._absent_since: dict[str, float] = {}
        self._last_published: tuple[Any, ...] | None = None
        registry = node.metrics.registry
        self.pain_gauge = Gauge(
            "resonance_thyroid_pain", "Thyroid pain (this worker + peers).", registry=registry
        )
        self.state_gauge = Gauge(
            "resonance_thyroid_state", "1 for the thyroid's current state.", ["state"], registry=registry
        )
        self.circuit_gauge = Gauge(
            "resonance_circuit_open",
            "1 while a dependency's circuit is open.",
            ["dependency"],
            registry=registry,
        )
        self.bio_seconds = Histogram(
            "resonance_bio_update_seconds",
            "CPU time of one biometric batch (thread time).",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25),
            registry=registry,
        )
        self.rooms_gauge = Gauge(
            "resonance_rooms", "Resonance rooms with members on this worker.", registry=registry
        )
        self.refused_counter = Counter(
            "resonance_thyroid_pain_refused",
            "Pain not counted because its client, address or user had used up its budget.",
            registry=registry,
        )
        self.cut_offs = Counter(
            "resonance_thyroid_cut_offs",
            "Connections disconnected (3509) because their errors flooded the thyroid.",
            registry=registry,
        )
        self.flooding_gauge = Gauge(
            "resonance_thyroid_flooding_identities",
            "Connections, addresses and users whose errors flood beyond their pain budget now.",
            registry=registry,
        )
        self._refused_reported = 0.0
        self._set_gauges(now)

    # -- pain hooks (the node calls these) -------------------------------------------

    def feel(self, source: PainSource) -> None:
        origin = _ORIGIN.get()
        identities = origin.identities(self.node) if origin is not None else ()
        update = self.thyroid.feel(source, self.clock(), identities=identities)
        if update.flooding and origin is not None:
            self._cut_off(origin, update.flooding)
        self._after(update)

    def _cut_off(self, origin: PainOrigin, flooding: frozenset[str]) -> None:
        """Disconnect a connection that floods (itself, or as its user): it, not everyone, pays.

        An address that floods is only capped: it may be a NAT or a proxy with innocent clients.
        """
        if origin.cut_off or not any(key.startswith(("conn:", "user:")) for key in flooding):
            return
        conn = origin.connection(self.node)
        if conn is None:
            return
        origin.cut_off = True
        log.warning(
            "client cut off: its errors flood the thyroid",
            extra={"client": conn.client_id, "user": conn.session.user, "ip": origin.ip},
        )
        self.cut_offs.inc()
        # Not from inside the session's own call that reported the pain: on the next loop turn.
        asyncio.get_running_loop().call_soon(conn.disconnect, Disconnects.TOO_MANY_ERRORS)

    def error_reply(self, code: int) -> None:
        source = pain_of_error(code)
        if source is not None:
            self.feel(source)

    def disconnected(self, reason: Disconnect | None) -> None:
        source = pain_of_disconnect(reason)
        if source is not None:
            self.feel(source)
        if self.node.draining:
            return  # our own shutdown closes every connection: that is not a storm
        origin = _ORIGIN.get()
        if self.storms.record(self.clock(), origin.ip if origin is not None and origin.ip else None):
            with _without_origin():  # a storm is the system's pain, not the last client's
                self.feel(PainSource.DISCONNECT_STORM)

    # -- thyroid ---------------------------------------------------------------------------

    def _after(self, update: ThyroidUpdate) -> None:
        """Apply an evaluation: adaptations now, events and publications from the loop."""
        now = self.clock()
        self._apply(update)
        if update.released is not None:
            log.warning("thyroid released", extra={"insight": update.released.summary})
            self._append(events.thyroid_released(self.origin, now, update.released.to_dict()))
        elif update.relaxed:
            log.info(
                "thyroid relaxed", extra={"state": update.state.value, "previous": update.previous.value}
            )
            self._append(
                events.thyroid_relaxed(
                    self.origin,
                    now,
                    state=update.state.value,
                    previous=update.previous.value,
                    pain=update.pain,
                )
            )
        self._set_gauges(now)

    def _apply(self, update: ThyroidUpdate) -> None:
        adaptations = update.adaptations
        now = self.clock()
        for name, breaker in self.circuits.items():
            if name in adaptations.open_circuits:
                breaker.force_open(now, self.settings.thyroid_evaluate_seconds * 2)
        factor = adaptations.rate_limit_factor
        if factor == self._applied_factor:
            return
        self._applied_factor = factor
        base = self._base_session_config
        # New connections get the tightened per-connection rate; publishes the tightened user rate.
        self.node.session_config = replace(
            base,
            command_rate=base.command_rate * factor,
            command_burst=max(1, math.floor(base.command_burst * factor)),
        )
        limits = self._base_settings.limits
        self.node.settings = self._base_settings.model_copy(
            update={
                "limits": limits.model_copy(
                    update={
                        "user_publish_rate": limits.user_publish_rate * factor,
                        "user_publish_burst": max(1, math.floor(limits.user_publish_burst * factor)),
                    }
                )
            }
        )
        log.info("rate limits scaled", extra={"factor": factor})

    def _set_gauges(self, now: float) -> None:
        self.pain_gauge.set(self.thyroid.pain(now))
        for state in ThyroidState:
            self.state_gauge.labels(state=state.value).set(1 if self.thyroid.state is state else 0)
        for name, breaker in self.circuits.items():
            self.circuit_gauge.labels(dependency=name).set(1 if breaker.state(now).value == "open" else 0)
        self.rooms_gauge.set(len(self.rooms))
        budget = self.thyroid.budget
        self.refused_counter.inc(budget.refused - self._refused_reported)
        self._refused_reported = budget.refused

    def shed_retry_after(self) -> float | None:
        """Seconds a new connection should wait, while the thyroid sheds them (else None)."""
        adaptations = self.thyroid.adaptations
        if not adaptations.shed_new_connections:
            return None
        return adaptations.retry_after_s or 1.0

    async def thyroid_step(self) -> None:
        """One evaluation: share our pain, merge the peers', re-evaluate, publish the status."""
        if self.graph is not None:
            self.graph.feel_failures()
        now = self.clock()
        self.flooding_gauge.set(len(self.thyroid.budget.flooding(now)))
        engine = self.node.engine
        snapshot = self.thyroid.snapshot(now).to_dict()
        try:
            await engine.add_presence(
                PAIN_CHANNEL,
                ClientInfo(user="thyroid", client=self.origin, conn_info=orjson.dumps(snapshot)),
                ttl_seconds=self.settings.thyroid_peer_ttl_seconds,
            )
            entries = await engine.presence(PAIN_CHANNEL)
        except EngineError as exc:
            log.warning("pain snapshots not shared", extra={"error": str(exc)})
            self.feel(PainSource.ENGINE_TIMEOUT)
            entries = None
        if entries is not None:
            peers = []
            for client, info in entries.items():
                if client == self.origin or info.conn_info is None:
                    continue
                try:
                    peers.append(PainSnapshot.from_dict(orjson.loads(info.conn_info)))
                except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
                    log.warning("malformed peer pain snapshot", extra={"peer": client, "error": str(exc)})
            self._after(self.thyroid.set_peers(peers, self.clock()))
        else:
            self._after(self.thyroid.evaluate(self.clock()))
        await self.publish_status()

    async def publish_status(self) -> None:
        now = self.clock()
        status = self.thyroid.status(now)
        key = (status["state"], round(status["pain"], 2), len(status["insights"]))
        if key == self._last_published:
            return
        self._last_published = key
        await self._publish(THYROID_CHANNEL, status, history=False)

    # -- events and publications --------------------------------------------------------

    def _append(self, event: events.Event) -> None:
        # Off the caller's path (pain hooks are synchronous); kept so the task is not collected.
        task = asyncio.ensure_future(self._append_now(event))
        self._appending.add(task)
        task.add_done_callback(self._appending.discard)

    async def settle(self) -> None:
        """Wait until every event handed to the log so far is appended."""
        while self._appending:
            await asyncio.gather(*list(self._appending))

    async def _append_now(self, event: events.Event) -> None:
        try:
            await self.event_log.append(event)
        except EventLogError as exc:
            log.warning("event not appended", extra={"event": event.type.value, "error": str(exc)})
            self.feel(PainSource.ENGINE_TIMEOUT)

    async def _publish(self, channel: str, payload: Mapping[str, Any], *, history: bool = True) -> None:
        options = self.node.rules.options(channel)
        try:
            await self.node.engine.publish(
                channel,
                orjson.dumps(payload),
                history=history_options(options) if history and options is not None else None,
            )
        except EngineError as exc:
            log.warning("living publication failed", extra={"channel": channel, "error": str(exc)})
            self.feel(PainSource.ENGINE_TIMEOUT)

    # -- emotional state ------------------------------------------------------------------

    def _user(self, call: RpcCall) -> str:
        if not call.user:
            raise RpcError(ErrorCode.PERMISSION_DENIED, "the living core needs an authenticated user")
        return call.user

    async def report_state(self, call: RpcCall) -> Any:
        user = self._user(call)
        now = self.clock()
        try:
            state = parse_report(call.data, now=now)
        except EmotionReportError as exc:
            raise RpcError(ErrorCode.BAD_REQUEST, str(exc)) from None
        smoothed = await self._take_state(user, state, call.client)
        report = SelfReport(state.at, state.arousal, state.valence, state.label)
        self._reports.setdefault(user, deque(maxlen=REFLECT_HISTORY)).append((call.client, report))
        return {"state": _smoothed_dict(smoothed)}

    async def reflect(self, call: RpcCall) -> Any:
        """Home state, harmony, self-understanding and the reflective questions they raise."""
        user = self._user(call)
        now = self.clock()
        reports = list(self._reports.get(user, ()))
        body = list(self._body.get(user, ()))
        pairs = pair_reports([r for _, r in reports], body)
        by_session: dict[str, list[SelfReport]] = {}
        for session, report in reports:
            by_session.setdefault(session, []).append(report)
        sessions = [pair_reports(session_reports, body) for session_reports in by_session.values()]
        home = home_state(pairs)
        balance = harmony(
            [StatePoint(r.t, r.valence, r.arousal) for _, r in reports], now, window_s=HARMONY_WINDOW_S
        )
        understanding = self_understanding(sessions)
        questions = ask(
            user,
            pairs=pairs,
            home=home,
            harmony=balance,
            harmony_window_s=HARMONY_WINDOW_S,
            understanding=understanding,
        )
        for question in questions:
            self._append(events.question_asked(user, now, question.to_dict()))
        return {
            "home": home.to_dict(),
            "harmony": balance.to_dict(),
            "self_understanding": understanding.to_dict(),
            "questions": [q.to_dict() for q in questions],
        }

    async def _take_state(self, user: str, state: EmotionalState, client: str | None) -> SmoothedState:
        smoothed = self.smoother.update(user, state)
        self._seq += 1
        self._append(events.state_changed(user, state.at, state.to_dict(), session_id=client, seq=self._seq))
        member = self._note_state(user, state.at)
        for room_id, room in self.rooms.items():
            if user in room.members.values() and member is not None:
                room.monitor.update_state(member, state.at)
                await self._publish(
                    room_channel(room_id), {"type": "state", "user": user, "state": _smoothed_dict(smoothed)}
                )
        return smoothed

    def _note_state(self, user: str, at: float) -> MemberState | None:
        """The person's state in rooms now, kept (as of ``at``) for sharing with the other workers."""
        member = self._member_state(user)
        if member is not None:
            recent = self._recent_states.setdefault(user, deque(maxlen=SHARED_STATES))
            recent.append((at, member.valence, member.arousal))
        return member

    def _member_state(self, user: str) -> MemberState | None:
        """A member's state in rooms: the self-report when there is one, else the body's."""
        current = self.smoother.current(user) or self.smoother.current(user, StateSource.BIOMETRIC)
        if current is None:
            return None
        return MemberState(user, _clip(current.valence, -1, 1), _clip(current.arousal, 0, 1))

    async def current_state(self, call: RpcCall) -> Any:
        user = self._user(call)
        return {
            source.value: (None if (s := self.smoother.current(user, source)) is None else _smoothed_dict(s))
            for source in StateSource
        }

    # -- rooms ------------------------------------------------------------------------------

    def _room_id(self, data: object) -> str:
        room = data.get("room") if isinstance(data, dict) else None
        if not isinstance(room, str) or not ROOM_ID.match(room):
            raise RpcError(ErrorCode.BAD_REQUEST, "room must be 1-64 letters, digits, '_' or '-'")
        return room

    async def join_room(self, call: RpcCall) -> Any:
        user = self._user(call)
        room_id = self._room_id(call.data)
        room = self.rooms.get(room_id)
        if room is None:
            publisher = ResonancePublisher(
                cadence_s=self.settings.room_cadence_seconds,
                min_change=self.settings.room_min_change,
                min_gap_s=min(1.0, self.settings.room_cadence_seconds),
            )
            room = _Room(RoomMonitor(room_id, self.resonance_config, publisher))
            await self._share_room(room_id, room)  # who is in it on the other workers
        if (
            call.client not in room.members
            and len(set(room.users()) | {user}) > self.settings.room_max_members
        ):
            raise RpcError(ErrorCode.LIMIT_EXCEEDED, f"room {room_id} is full")
        now = self.clock()
        self.rooms[room_id] = room
        room.members[call.client] = user
        member = self._note_state(user, now)
        if member is not None:
            room.monitor.update_state(member, now)
        await self._share_room(room_id, room)  # the others see the new member now, not at the next tick
        self._append(events.presence_changed(room_id, now, user, joined=True, client_id=call.client))
        self._set_gauges(now)
        return {"channel": room_channel(room_id), "members": room.users()}

    async def leave_room(self, call: RpcCall) -> Any:
        self._user(call)
        room_id = self._room_id(call.data)
        room = self.rooms.get(room_id)
        if room is None or call.client not in room.members:
            raise RpcError(ErrorCode.BAD_REQUEST, f"not a member of room {room_id}")
        await self._drop_member(room_id, room, call.client)
        return {"left": room_id}

    async def _drop_member(self, room_id: str, room: _Room, client: str) -> None:
        user = room.members.pop(client)
        self._append(events.presence_changed(room_id, self.clock(), user, joined=False, client_id=client))
        if user in room.members.values():
            return
        room.monitor.remove_member(user)
        if not room.members:
            del self.rooms[room_id]
        try:
            await self.node.engine.remove_presence(ROOM_STATE_PREFIX + room_id, f"{user}@{self.origin}")
        except EngineError as exc:  # the entry expires with its TTL
            log.warning("room entry not removed", extra={"room": room_id, "error": str(exc)})
            self.feel(PainSource.ENGINE_TIMEOUT)

    async def rooms_step(self) -> None:
        """Every room: drop members whose connection is gone, share ours and read the other workers',
        and, on the room's leader, tick and publish what the monitor says."""
        now = self.clock()
        for room_id, room in list(self.rooms.items()):
            for client in [c for c in room.members if c not in self.node.connections]:
                await self._drop_member(room_id, room, client)
        # Rooms are independent: their engine round trips overlap instead of adding up.
        rooms = list(self.rooms.items())
        await asyncio.gather(*(self._share_room(room_id, room) for room_id, room in rooms))
        for room_id, room in rooms:
            if self.rooms.get(room_id) is not room:
                continue  # its last member here left meanwhile
            if self._leads(room, now):
                await self._tick_room(room_id, room.monitor.tick(now), room)
            else:
                room.monitor.trim(now)
        self._forget_absent(now)
        self._set_gauges(now)

    # -- rooms across workers -------------------------------------------------------------

    def _entry(self, user: str, now: float) -> bytes:
        horizon = now - SHARE_HORIZON_S
        states = list(self._recent_states.get(user, ()))
        recent_states = [s for s in states if s[0] >= horizon] or states[-1:]  # the latest always
        return orjson.dumps(
            {
                "worker": self.origin,
                "user": user,
                "hr": [h for h in self._recent_heart.get(user, ()) if h[0] >= horizon],
                "states": recent_states,
            }
        )

    async def _share_room(self, room_id: str, room: _Room) -> None:
        """Write an entry per member of ours into the room's shared presence (TTL: a worker that dies
        stops refreshing them), read everyone's, and mirror the other workers' members into the monitor.

        When the engine fails the room carries on with what it knows, and this worker counts itself
        as the only one (degraded mode fans its publications out locally anyway).
        """
        channel = ROOM_STATE_PREFIX + room_id
        now = self.clock()
        ttl = max(5.0, 5 * self.settings.room_tick_seconds)
        local = set(room.members.values())
        try:
            for user in sorted(local):
                info = ClientInfo(user=user, client=f"{user}@{self.origin}", conn_info=self._entry(user, now))
                await self.node.engine.add_presence(channel, info, ttl_seconds=ttl)
            entries = await self.node.engine.presence(channel)
        except EngineError as exc:
            log.warning("room not shared", extra={"room": room_id, "error": str(exc)})
            self.feel(PainSource.ENGINE_TIMEOUT)
            room.workers = frozenset({self.origin})
            return
        workers = {self.origin}
        found: dict[str, tuple[str, list[HeartRateSample], list[tuple[float, MemberState]]]] = {}
        for client, info in entries.items():
            if info.conn_info is None:
                continue
            try:
                worker, user, heart, states = _shared_entry(info.conn_info)
            except ValueError as exc:
                log.warning(
                    "malformed room entry", extra={"room": room_id, "entry": client, "error": str(exc)}
                )
                continue
            if worker == self.origin:
                continue
            workers.add(worker)
            # A person also connected here is this worker's own member: its view of them wins.
            if user not in local and (user not in found or _newest(states) > _newest(found[user][2])):
                found[user] = (worker, heart, states)
        for user in [u for u in room.remote if u not in found]:
            del room.remote[user]
            room.seen.pop(user, None)
            if user not in local:
                room.monitor.remove_member(user)
        for user, (worker, heart, states) in found.items():
            room.remote[user] = worker
            last_heart, last_state = room.seen.get(user, (-math.inf, -math.inf))
            for sample in heart:
                if sample.t > last_heart:
                    room.monitor.add_heart_rate(user, sample)
                    last_heart = sample.t
            for at, state in states:
                if at > last_state:
                    room.monitor.update_state(state, at)
                    last_state = at
            room.seen[user] = (last_heart, last_state)
        room.workers = frozenset(workers)

    def _leads(self, room: _Room, now: float) -> bool:
        """Whether this worker computes and publishes the room: the first of its workers by name.

        Every worker reads the same entries, so they agree. A worker that finds itself leader while
        others are in the room waits one tick before publishing, by which time the previous leader
        has read its entry and stepped down: no publication is made twice.
        """
        if not room.workers or min(room.workers) != self.origin:
            room.leader_since = None
            return False
        if room.leader_since is None:
            room.leader_since = now
        return len(room.workers) == 1 or now - room.leader_since >= self.settings.room_tick_seconds

    def _forget_absent(self, now: float) -> None:
        """Drop what is kept of people with no connection here for ``FORGET_AFTER_S`` (a reconnect
        within it keeps their biometric stream and history): memory stays bounded by who is around."""
        known = set(self.streams) | set(self._reports) | set(self._body) | set(self._absent_since)
        known |= set(self._recent_heart) | set(self._recent_states)
        for user in known:
            if user in self.node.by_user:
                self._absent_since.pop(user, None)
                continue
            since = self._absent_since.setdefault(user, now)
            if now - since >= FORGET_AFTER_S:
                for kept in (
                    self.streams,
                    self._reports,
                    self._body,
                    self._last_bpm,
                    self._absent_since,
                    self._recent_heart,
                    self._recent_states,
                ):
                    kept.pop(user, None)
                self.smoother.forget(user)

    async def _tick_room(self, room_id: str, tick: RoomTick, room: _Room) -> None:
        channel = room_channel(room_id)
        if tick.publish is not None:
            result = tick.resonance.to_dict()
            await self._publish(
                channel,
                {"type": "resonance", "reason": tick.publish.value, **result, "computed_by": self.origin},
            )
            self._append(events.resonance_computed(room_id, tick.resonance.at, result))
        members = room.users()
        for pattern in tick.patterns:
            await self._publish(channel, {"type": "pattern", **pattern.to_dict()})
            self._append(events.pattern_detected(room_id, pattern.at, pattern.to_dict()))
            for question in from_room_pattern(pattern, members):
                await self._publish(channel, {"type": "question", **question.to_dict()})
                self._append(events.question_asked(question.subject, pattern.at, question.to_dict()))

    # -- biometrics ----------------------------------------------------------------------

    async def push_biometrics(self, call: RpcCall) -> Any:
        user = self._user(call)
        batch = _parse_batch(call.data)
        bio = self.streams.get(user)
        if bio is None:
            if len(self.streams) >= self.settings.bio_max_streams:
                raise RpcError(ErrorCode.LIMIT_EXCEEDED, "too many biometric streams on this worker")
            config = StreamConfig(camera_region=batch["region"], face_method=batch["face_method"])
            bio = self.streams[user] = _Bio(BiometricStream(config))
        async with bio.lock:  # one batch of a person at a time, in order
            loop = asyncio.get_running_loop()
            try:
                readings, cpu_seconds = await loop.run_in_executor(None, _push, bio.stream, batch)
            except BiometricsError as exc:
                raise RpcError(ErrorCode.BAD_REQUEST, str(exc)) from None
        self.bio_seconds.observe(cpu_seconds)
        await self._use_readings(user, call.client, readings)
        return {"readings": readings, "channel": bio_channel(user)}

    async def _use_readings(self, user: str, client: str, readings: list[dict[str, Any]]) -> None:
        now = self.clock()
        for reading in readings:
            await self._publish(bio_channel(user), reading)
            if reading["kind"] == "heart_rate" and reading.get("bpm") is not None:
                self._last_bpm[user] = float(reading["bpm"])
                sample = HeartRateSample(now, float(reading["bpm"]))
                recent = self._recent_heart.setdefault(user, deque(maxlen=SHARED_HEART_RATES))
                recent.append((now, sample.bpm))
                for room in self.rooms.values():
                    if user in room.members.values():
                        room.monitor.add_heart_rate(user, sample)
            elif reading["kind"] == "arousal" and reading.get("index") is not None:
                body = BodySample(now, _clip(float(reading["index"]), 0.0, 1.0), self._last_bpm.get(user))
                self._body.setdefault(user, deque(maxlen=REFLECT_HISTORY)).append(body)
                own = self.smoother.current(user)
                state = EmotionalState(
                    valence=own.valence if own is not None else 0.0,
                    arousal=_clip(float(reading["index"]), 0.0, 1.0),
                    source=StateSource.BIOMETRIC,
                    at=now,
                )
                await self._take_state(user, state, client)

    async def stop_biometrics(self, call: RpcCall) -> Any:
        user = self._user(call)
        return {"stopped": self.streams.pop(user, None) is not None}

    # -- thyroid and events over RPC -------------------------------------------------------------

    async def thyroid_status(self, call: RpcCall) -> Any:
        return self.thyroid.status(self.clock())

    async def replay(self, call: RpcCall) -> Any:
        """The caller's own events in a window of the log (``since_ms``/``until_ms``, log clock)."""
        user = self._user(call)
        data = call.data if call.data is not None else {}
        if not isinstance(data, dict):
            raise RpcError(ErrorCode.BAD_REQUEST, "events.replay takes a JSON object")
        types = data.get("types")
        try:
            wanted = None if types is None else {events.EventType(kind) for kind in types}
            found = await self.event_log.replay(
                data.get("since_ms"), data.get("until_ms"), limit=data.get("limit", 1000)
            )
        except (TypeError, ValueError) as exc:  # EventLogInputError is a ValueError
            raise RpcError(ErrorCode.BAD_REQUEST, f"events.replay: {exc}") from None
        return {
            "events": [
                event.to_dict()
                for event in found
                if event.subject == user and (wanted is None or event.type in wanted)
            ]
        }

    def rpc_methods(self) -> dict[str, RpcHandler]:
        return {
            "state.report": self.report_state,
            "state.get": self.current_state,
            "self.reflect": self.reflect,
            "room.join": self.join_room,
            "room.leave": self.leave_room,
            "bio.push": self.push_biometrics,
            "bio.stop": self.stop_biometrics,
            "thyroid.status": self.thyroid_status,
            "events.replay": self.replay,
        }

    # -- the loops ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Forever: the thyroid at its period, the rooms at theirs."""
        await asyncio.gather(
            _every(self.settings.thyroid_evaluate_seconds, self.thyroid_step),
            _every(self.settings.room_tick_seconds, self.rooms_step),
        )


def _newest(states: list[tuple[float, MemberState]]) -> float:
    return states[-1][0] if states else -math.inf


def _clip(value: float, low: float, high: float) -> float:
    return min(high, max(low, value))


def _smoothed_dict(state: SmoothedState) -> dict[str, Any]:
    return {
        "valence": round(state.valence, 4),
        "arousal": round(state.arousal, 4),
        "source": state.source.value,
        "at": state.at,
        "weight": round(state.weight, 4),
        "label": state.label,
    }


async def _every(period: float, step: Callable[[], Awaitable[None]]) -> None:
    while True:
        try:
            await step()
        except Exception:  # one failing step must not stop the loop; it hurts instead
            log.exception("living step failed")
        await asyncio.sleep(period)


# ----------------------------------------------------------------------------- installing


def install_living(app: web.Application, node: Node, settings: LivingSettings) -> Living:
    """Add the living core to the app: namespaces, RPC methods, pain hooks, routes, loops."""
    for name, options in living_namespaces().items():
        node.rules.namespaces.setdefault(name, options)
    living = Living(node, settings)
    for method, handler in living.rpc_methods().items():
        node.rpc_methods.setdefault(method, handler)
    node.pain = living

    @web.middleware
    async def shed(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path != "/connection/websocket":
            return await handler(request)
        retry = living.shed_retry_after()
        if retry is not None:
            return web.json_response(
                {"error": "overloaded", "retry_after": retry},
                status=503,
                headers={"Retry-After": str(math.ceil(retry))},
            )
        # Whatever hurts from here on (in this task and what it starts) is charged to this client.
        token = _ORIGIN.set(PainOrigin(client_ip(request, node.address_policy), request.transport))
        try:
            return await handler(request)
        finally:
            _ORIGIN.reset(token)

    async def status(request: web.Request) -> web.Response:
        return web.json_response(living.thyroid.status(living.clock()))

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        engine = innermost(node.engine)  # degraded mode wraps the Redis engine; the log is still Redis's
        if isinstance(engine, RedisEngine):
            # The cluster's durable log: a Redis Stream next to the engine's keys (the engine is started).
            from resonance_worker.eventlog.redis import RedisEventLog

            living.event_log = RedisEventLog(
                engine.client, prefix=node.settings.redis_prefix, retention=Retention(max_len=1_000_000)
            )
        task = asyncio.create_task(living.run())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.middlewares.append(shed)
    app.router.add_get("/thyroid/status", status)
    app.cleanup_ctx.append(lifecycle)
    if node.settings.neo4j.uri:
        from resonance_worker.transport.living_graph import install_graph

        install_graph(app, living, node.settings.neo4j)
    return living
