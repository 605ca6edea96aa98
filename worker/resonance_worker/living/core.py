"""The living core of one worker: its services wired together, its RPC handlers and its steps.

:class:`Living` is built before the node (``create_app``) from the settings, the
:class:`~resonance_worker.storage.Storage`, the channel rules and the roster; the node is then
built with ``living.thyroid`` as its pain hooks, ``living.thyroid.limits`` as its limits and the
methods of :func:`~resonance_worker.living.rpc.living_methods` in its RPC table. The transport
(``transport.living``) adds the routes and middleware and calls :meth:`Living.thyroid_step` and
:meth:`Living.rooms_step` at their periods.

The decisions live in the services (sans I/O where they can be): ``thyroid`` (pain → adaptations),
``directory`` (rooms across workers), ``states`` (people's states and reflection), ``bio``
(biometric streams), ``graph`` (the temporal graph, when configured). This class does the I/O
around them: engine round trips, publications, events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram

from resonance_worker.domain import events
from resonance_worker.domain.biometrics import ArousalReading, HeartRateReading, Reading
from resonance_worker.domain.channels import ChannelRules, NamespaceOptions
from resonance_worker.domain.codes import ErrorCode
from resonance_worker.domain.consent import DataKind, granted
from resonance_worker.domain.emotion import EmotionalState, EmotionReportError, SmoothedState, parse_report
from resonance_worker.domain.insights import from_room_pattern
from resonance_worker.domain.resonance import HeartRateSample, RoomTick
from resonance_worker.domain.ydocs import DOC_NAMESPACE, NOTES_NAMESPACE
from resonance_worker.engines.base import ClientInfo
from resonance_worker.errors import EngineError
from resonance_worker.eventlog import EventLog
from resonance_worker.living.biometrics import BIO_NAMESPACE, BioStreams, bio_channel, parse_batch
from resonance_worker.living.docs import SharedDocs
from resonance_worker.living.graph import LivingGraph
from resonance_worker.living.limits import Limits
from resonance_worker.living.outbox import Journal, Publisher
from resonance_worker.living.person import PersonStore
from resonance_worker.living.rooms import (
    ROOM_NAMESPACE,
    ROOM_STATE_PREFIX,
    Room,
    RoomDirectory,
    RoomFullError,
    room_channel,
    room_id_of,
)
from resonance_worker.living.roster import Present
from resonance_worker.living.states import REFLECT_HISTORY, States, smoothed_dict
from resonance_worker.living.thyroid import PAIN_CHANNEL, ThyroidService
from resonance_worker.living_settings import LivingSettings
from resonance_worker.rpc import RpcCall, RpcError
from resonance_worker.settings import DataSettings
from resonance_worker.storage import Storage

log = logging.getLogger("resonance.worker.living")

THYROID_CHANNEL = "system:thyroid"
FORGET_AFTER_S = 300.0
"""A person with no connection on this worker this long is forgotten here (stream, history, state)."""


def living_namespaces() -> dict[str, NamespaceOptions]:
    """The namespaces the living core publishes on; the settings' own definitions win."""
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
        # Shared documents: read by subscribers, written with doc.send (logged; raw publish is refused).
        DOC_NAMESPACE: NamespaceOptions(allow_subscribe_for_client=True, allow_publish_for_client=True),
        NOTES_NAMESPACE: NamespaceOptions(allow_subscribe_for_client=True),  # written by the room's members
        BIO_NAMESPACE: NamespaceOptions(
            history_size=100,
            history_ttl_seconds=300.0,
            allow_recovery=True,
            allow_user_limited_channels=True,
            allow_subscribe_for_client=True,
            allow_history_for_subscriber=True,
        ),
    }


def _user(call: RpcCall) -> str:
    if not call.user:
        raise RpcError(ErrorCode.PERMISSION_DENIED, "the living core needs an authenticated user")
    return call.user


def _room_id(data: object) -> str:
    room = room_id_of(data)
    if room is None:
        raise RpcError(ErrorCode.BAD_REQUEST, "room must be 1-64 letters, digits, '_' or '-'")
    return room


class Living:
    """Everything of the living core one worker holds."""

    def __init__(
        self,
        settings: LivingSettings,
        storage: Storage,
        *,
        origin: str,
        rules: ChannelRules,
        present: Present,
        base_limits: Limits,
        registry: CollectorRegistry,
        clock: Callable[[], float] = time.time,
        data: DataSettings | None = None,
    ) -> None:
        self.settings = settings
        self.data = data or DataSettings()
        self._kinds: dict[str, frozenset[DataKind]] = {}
        """What each person here consented to be stored, from their latest call (``domain.consent``)."""
        self.storage = storage
        self.origin = origin
        self.present = present
        self.clock = clock
        self.journal = Journal(
            storage.event_log, on_failure=self._store_failed, capacity=settings.journal_capacity
        )
        self.publisher = Publisher(storage.engine, rules, on_failure=self._store_failed)
        self.thyroid = ThyroidService(
            settings,
            origin=origin,
            present=present,
            base_limits=base_limits,
            record=self.journal.append,
            registry=registry,
            clock=clock,
        )
        self.directory = RoomDirectory(origin, settings)
        self.states = States(settings.state_half_life_seconds)
        self.bio = BioStreams(settings.bio_max_streams)
        self.docs = SharedDocs(
            settings,
            storage.docs,
            self.publisher,
            rules=rules,
            present=present,
            writes_notes=self._writes_notes,
            clock=clock,
            registry=registry,
        )
        self.people = PersonStore(
            storage.engine,
            ttl_seconds=settings.person_ttl_seconds,
            max_items=REFLECT_HISTORY,
            on_failure=self._store_failed,
        )
        self._person_rooms: dict[str, set[str]] = {}
        """The rooms each restored person joined (and has not left), on any worker."""
        self._clients_seen: set[str] = set()
        """Connections whose first living call has put them back in their person's rooms."""
        self._restored: dict[str, dict[str, Any] | None] = {}
        """People whose stored state this worker has read, with their stored baseline (until their
        stream here opens with it)."""
        self.graph = (
            None
            if storage.graph is None
            else LivingGraph(
                storage.graph,
                event_log=storage.event_log,
                consumer=origin,
                breaker=self.thyroid.circuits["neo4j"],
                feel=self.thyroid.feel,
                clock=clock,
            )
        )
        self._seq = 0
        self._absent_since: dict[str, float] = {}
        self.bio_seconds = Histogram(
            "resonance_bio_update_seconds",
            "CPU time of one biometric batch (thread time).",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25),
            registry=registry,
        )
        self.rooms_gauge = Gauge(
            "resonance_rooms", "Resonance rooms with members on this worker.", registry=registry
        )
        Gauge(
            "resonance_eventlog_buffered",
            "Events waiting for the event log (Redis away), in order; bounded by the journal capacity.",
            registry=registry,
        ).set_function(lambda: self.journal.buffered)
        Gauge(
            "resonance_eventlog_dropped",
            "Events dropped since start because the journal's buffer was full (a counter).",
            registry=registry,
        ).set_function(lambda: self.journal.dropped)

    @property
    def rooms(self) -> dict[str, Room]:
        """The rooms with members on this worker."""
        return self.directory.rooms

    def _room_members(self, room_id: str) -> frozenset[str]:
        room = self.directory.rooms.get(room_id)
        return frozenset(room.users()) if room is not None else frozenset()

    async def _writes_notes(self, call: RpcCall, room_id: str) -> bool:
        """Whether the caller is a member of ``room_id`` (and so writes its notes), on any worker.

        Membership is the person's, not the socket's: a member may have joined through a connection on
        another worker. This worker's view first; then the caller's first living call here puts the
        connection back in its person's stored rooms (as every living method does); last, the room's
        shared roster in the engine (its presence entries, one per member and worker), which also knows
        a join on another worker after this one had read the person. ``EngineError`` when it fails.
        """
        user = call.user
        if not user:
            return False
        if user in self._room_members(room_id):
            return True
        await self._person(call)
        if user in self._room_members(room_id):
            return True
        entries = await self.storage.engine.presence(ROOM_STATE_PREFIX + room_id)
        return any(info.user == user for info in entries.values())

    @property
    def event_log(self) -> EventLog:
        return self.storage.event_log

    def consented(self, call: RpcCall) -> frozenset[DataKind]:
        """What may be stored of the caller (and, until their next call, of them in the background)."""
        kinds = granted(call.consent, required=self.data.consent_required)
        if call.user:
            self._kinds[call.user] = kinds
        return kinds

    def kinds_of(self, user: str) -> frozenset[DataKind]:
        """What may be stored of ``user``, as their latest call here said (nothing known: no claim)."""
        known = self._kinds.get(user)
        return known if known is not None else granted(None, required=self.data.consent_required)

    def _all_consent(self, users: Sequence[str], kind: DataKind) -> bool:
        return all(kind in self.kinds_of(user) for user in users)

    def _store_failed(self) -> None:
        self.thyroid.engine_failed()

    async def settle(self) -> None:
        """Wait until every event handed to the log so far is appended."""
        await self.journal.settle()

    async def close(self, flush_seconds: float = 2.0) -> None:
        """Give the journal ``flush_seconds`` to append what it buffered (and the shared documents to
        finish their compactions), then stop it."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(flush_seconds):
                await self.journal.settle()
                await self.docs.settle()
        await self.journal.close()

    # -- the thyroid across workers ----------

    async def thyroid_step(self) -> None:
        """One evaluation: share our pain, merge the peers', re-evaluate, publish the status."""
        if self.graph is not None:
            self.graph.feel_failures()
        now = self.clock()
        self.thyroid.count_flooding(now)
        engine = self.storage.engine
        entries: list[tuple[str, bytes | None]] | None
        try:
            await engine.add_presence(
                PAIN_CHANNEL,
                ClientInfo(user="thyroid", client=self.origin, conn_info=self.thyroid.snapshot_entry(now)),
                ttl_seconds=self.settings.thyroid_peer_ttl_seconds,
            )
            entries = [
                (client, info.conn_info) for client, info in (await engine.presence(PAIN_CHANNEL)).items()
            ]
        except EngineError as exc:
            log.warning("pain snapshots not shared", extra={"error": str(exc)})
            self.thyroid.engine_failed(exc)
            entries = None
        else:  # the probe of Redis's health: it answered
            self.thyroid.engine_answered()
        self.thyroid.merge_peers(entries, self.clock())
        await self.publish_status()

    async def publish_status(self) -> None:
        """Publish the thyroid's status on ``system:thyroid`` when it changed."""
        status = self.thyroid.status_to_publish(self.clock())
        if status is not None:
            await self.publisher.publish(THYROID_CHANNEL, status, history=False)

    # -- a person's state across workers ----------

    async def _person(self, call: RpcCall) -> str:
        """The caller, with what the engine keeps of them read in at their first call here (another
        worker may have held them before a drain, a rollout or a crash: ``living/person.py``)."""
        user = _user(call)
        if user not in self._restored:
            stored = await self.people.load(user)
            if user not in self._restored:  # two first calls at once: the first one restores
                self.states.restore(user, stored.reports, stored.body)
                self._restored[user] = stored.baseline
                self._person_rooms[user] = set(stored.rooms)
        if call.client and call.client not in self._clients_seen:
            # A connection's first living call puts it back in the rooms its person is in (a reconnect,
            # here or after a move from another worker): membership is the person's, not the socket's.
            self._clients_seen.add(call.client)
            for room_id in sorted(self._person_rooms.get(user, ())):
                room = self.directory.rooms.get(room_id)
                if room is not None and call.client in room.members:
                    continue
                try:
                    await self._admit(room_id, call.client, user)
                except RpcError as exc:
                    log.info("room not restored", extra={"room": room_id, "user": user, "error": exc.message})
        return user

    # -- emotional state ----------

    async def report_state(self, call: RpcCall) -> Any:
        """``state.report``: a validated, smoothed state, shared in the person's rooms and logged."""
        user = await self._person(call)
        try:
            state = parse_report(call.data, now=self.clock())
        except EmotionReportError as exc:
            raise RpcError(ErrorCode.BAD_REQUEST, str(exc)) from None
        kinds = self.consented(call)
        smoothed = await self._take_state(user, state, call.client, kinds)
        report = self.states.self_reported(user, call.client, state)
        if DataKind.EMOTIONS in kinds:  # kept for the next worker (issue 15) only with consent
            await self.people.report(user, call.client, report)
        return {"state": smoothed_dict(smoothed)}

    async def current_state(self, call: RpcCall) -> Any:
        """``state.get``: the caller's smoothed state by source."""
        return self.states.current(await self._person(call))

    async def reflect(self, call: RpcCall) -> Any:
        """``self.reflect``: home state, harmony, self-understanding and the questions they raise."""
        user = await self._person(call)
        now = self.clock()
        reflection = self.states.reflect(user, now)
        kinds = self.consented(call)
        for question in reflection.questions:
            if DataKind.EMOTIONS in kinds:
                graph = DataKind.GRAPH in kinds
                self.journal.append(events.question_asked(user, now, question.to_dict(), graph=graph))
        return reflection.body

    async def _take_state(
        self, user: str, state: EmotionalState, client: str | None, kinds: frozenset[DataKind]
    ) -> SmoothedState:
        """Smooth ``state``; log it and keep it in room history only with consent to ``emotions``
        (shared live with the rooms either way), project it only with consent to ``graph``."""
        smoothed = self.states.take(user, state)
        keep = DataKind.EMOTIONS in kinds
        if keep:
            self._seq += 1
            self.journal.append(
                events.state_changed(
                    user,
                    state.at,
                    state.to_dict(),
                    session_id=client,
                    seq=self._seq,
                    graph=DataKind.GRAPH in kinds,
                )
            )
        member = self.states.member_state(user)
        if member is not None:
            for room_id in self.directory.state(user, member, state.at):
                await self.publisher.publish(
                    room_channel(room_id),
                    {"type": "state", "user": user, "state": smoothed_dict(smoothed)},
                    history=keep,
                )
        return smoothed

    # -- rooms ----------

    async def join_room(self, call: RpcCall) -> Any:
        """``room.join``: the room's channel and everyone in it, on any worker."""
        user = await self._person(call)
        self.consented(call)  # what _admit may log of them
        room_id = _room_id(call.data)
        room = await self._admit(room_id, call.client, user)
        rooms = self._person_rooms.setdefault(user, set())
        if room_id not in rooms:
            rooms.add(room_id)
            await self.people.rooms(user, rooms)
        return {"channel": room_channel(room_id), "members": room.users()}

    async def _admit(self, room_id: str, client: str, user: str) -> Room:
        room = self.directory.room(room_id)
        if room_id not in self.directory.rooms:
            await self._share_room(room_id, room)  # who is in it on the other workers
        now = self.clock()
        try:
            self.directory.admit(room_id, room, client, user, self.states.member_state(user), now)
        except RoomFullError:
            raise RpcError(ErrorCode.LIMIT_EXCEEDED, f"room {room_id} is full") from None
        await self._share_room(room_id, room)  # the others see the new member now, not at the next tick
        graph = DataKind.GRAPH in self.kinds_of(user)
        self.journal.append(
            events.presence_changed(room_id, now, user, joined=True, client_id=client, graph=graph)
        )
        self._set_gauges(now)
        return room

    async def leave_room(self, call: RpcCall) -> Any:
        """``room.leave``: this connection leaves the room."""
        user = _user(call)
        room_id = _room_id(call.data)
        room = self.directory.rooms.get(room_id)
        if room is None or call.client not in room.members:
            raise RpcError(ErrorCode.BAD_REQUEST, f"not a member of room {room_id}")
        await self._drop_member(room_id, room, call.client)
        rooms = self._person_rooms.get(user)
        if (
            rooms is not None and room_id in rooms and not any(u == user for u in room.members.values())
        ):  # the person's last connection here left it: they are out of the room
            rooms.discard(room_id)
            await self.people.rooms(user, rooms)
        return {"left": room_id}

    async def _drop_member(self, room_id: str, room: Room, client: str) -> None:
        user, last_here = self.directory.leave(room_id, room, client)
        graph = DataKind.GRAPH in self.kinds_of(user)
        self.journal.append(
            events.presence_changed(room_id, self.clock(), user, joined=False, client_id=client, graph=graph)
        )
        if not last_here:
            return
        try:
            await self.storage.engine.remove_presence(
                ROOM_STATE_PREFIX + room_id, self.directory.entry_client(user)
            )
        except EngineError as exc:  # the entry expires with its TTL
            log.warning("room entry not removed", extra={"room": room_id, "error": str(exc)})
            self.thyroid.engine_failed(exc)

    async def _share_room(self, room_id: str, room: Room) -> None:
        """Write our members' entries into the room's shared presence (TTL: a worker that dies stops
        refreshing them), read everyone's and mirror the other workers' members.

        When the engine fails the room carries on with what it knows, and this worker counts itself
        as the only one (degraded mode fans its publications out locally anyway).
        """
        channel = ROOM_STATE_PREFIX + room_id
        engine = self.storage.engine
        try:
            for user, client, entry in self.directory.entries_to_share(room, self.clock()):
                info = ClientInfo(user=user, client=client, conn_info=entry)
                await engine.add_presence(channel, info, ttl_seconds=self.directory.entry_ttl)
            entries = await engine.presence(channel)
        except EngineError as exc:
            log.warning("room not shared", extra={"room": room_id, "error": str(exc)})
            self.thyroid.engine_failed(exc)
            self.directory.alone(room)
            return
        malformed = self.directory.merge(room, ((client, info.conn_info) for client, info in entries.items()))
        for client, problem in malformed:
            log.warning("malformed room entry", extra={"room": room_id, "entry": client, "error": problem})

    async def rooms_step(self) -> None:
        """Every room: drop members whose connection is gone, share ours and read the other workers',
        and, on the room's leader, tick and publish what the monitor says."""
        now = self.clock()
        for room_id, room in list(self.directory.rooms.items()):
            for client in [c for c in room.members if c not in self.present.connections]:
                await self._drop_member(room_id, room, client)
        # Rooms are independent: their engine round trips overlap instead of adding up.
        rooms = list(self.directory.rooms.items())
        await asyncio.gather(*(self._share_room(room_id, room) for room_id, room in rooms))
        for room_id, room in rooms:
            if self.directory.rooms.get(room_id) is not room:
                continue  # its last member here left meanwhile
            if self.directory.leads(room, now):
                await self._tick_room(room_id, room.monitor.tick(now), room)
            else:
                room.monitor.trim(now)
        self._forget_absent(now)
        self._clients_seen &= set(self.present.connections)
        self._set_gauges(now)

    async def _tick_room(self, room_id: str, tick: RoomTick, room: Room) -> None:
        """Publish what the room's monitor found; keep it (history, log) only when every member
        consented to ``emotions``: it is computed from all their states and heart rates."""
        channel = room_channel(room_id)
        members = room.users()
        keep = self._all_consent(members, DataKind.EMOTIONS)
        if tick.publish is not None:
            result = tick.resonance.to_dict()
            await self.publisher.publish(
                channel,
                {"type": "resonance", "reason": tick.publish.value, **result, "computed_by": self.origin},
                history=keep,
            )
            if keep:
                self.journal.append(events.resonance_computed(room_id, tick.resonance.at, result))
        for pattern in tick.patterns:
            await self.publisher.publish(channel, {"type": "pattern", **pattern.to_dict()}, history=keep)
            if keep:
                self.journal.append(events.pattern_detected(room_id, pattern.at, pattern.to_dict()))
            for question in from_room_pattern(pattern, members):
                await self.publisher.publish(
                    channel, {"type": "question", **question.to_dict()}, history=keep
                )
                kinds = self.kinds_of(question.subject)
                if DataKind.EMOTIONS in kinds:
                    self.journal.append(
                        events.question_asked(
                            question.subject, pattern.at, question.to_dict(), graph=DataKind.GRAPH in kinds
                        )
                    )

    def _forget_absent(self, now: float) -> None:
        """Drop what is kept of people with no connection here for ``FORGET_AFTER_S`` (a reconnect
        within it keeps their biometric stream and history): memory stays bounded by who is around."""
        known = (
            self.bio.known()
            | self.states.known()
            | self.directory.known()
            | set(self._absent_since)
            | set(self._restored)
        )
        for user in known:
            if user in self.present.by_user:
                self._absent_since.pop(user, None)
                continue
            since = self._absent_since.setdefault(user, now)
            if now - since >= FORGET_AFTER_S:
                self.forget(user)

    async def erase(self, user: str) -> None:
        """For an erasure: take ``user`` out of every room here without logging it (their shared room
        entries go too), then forget what is kept of them in memory."""
        for room_id, room in list(self.directory.rooms.items()):
            for client in [c for c, member in room.members.items() if member == user]:
                _, last_here = self.directory.leave(room_id, room, client)
                if last_here:
                    entry = self.directory.entry_client(user)
                    try:
                        await self.storage.engine.remove_presence(ROOM_STATE_PREFIX + room_id, entry)
                    except EngineError as exc:  # the erasure's own presence sweep follows
                        log.warning("room entry not removed", extra={"room": room_id, "error": str(exc)})
        self.forget(user)

    def forget(self, user: str) -> None:
        """Drop everything this worker keeps of ``user`` (stream, states, reports, shared trail)."""
        self.bio.forget(user)
        self.states.forget(user)
        self.directory.forget(user)
        self._absent_since.pop(user, None)
        self._restored.pop(user, None)  # kept in the engine; read again if they come back
        self._person_rooms.pop(user, None)
        self._kinds.pop(user, None)

    def _set_gauges(self, now: float) -> None:
        self.thyroid.set_gauges(now)
        self.rooms_gauge.set(len(self.directory.rooms))

    # -- biometrics ----------

    async def push_biometrics(self, call: RpcCall) -> Any:
        """``bio.push``: a batch through the caller's stream; the readings, also published and used."""
        user = await self._person(call)
        pushed = await self.bio.push(user, parse_batch(call.data), baseline=self._restored.get(user))
        self._restored[user] = None  # the stream holds it now
        self.bio_seconds.observe(pushed.cpu_seconds)
        kinds = self.consented(call)
        readings = await self.use_readings(user, call.client, pushed.readings, kinds)
        baseline = self.bio.baseline(user)
        if pushed.readings and baseline is not None and DataKind.BIOMETRICS in kinds:
            await self.people.baseline(user, baseline)
        return {"readings": readings, "channel": bio_channel(user)}

    async def use_readings(
        self, user: str, client: str, readings: Sequence[Reading], kinds: frozenset[DataKind] | None = None
    ) -> list[dict[str, Any]]:
        """Publish each reading on ``bio:#<user>`` (kept in its history only with consent to
        ``biometrics``) and feed it where it belongs: a heart rate to the person's rooms, an arousal to
        their state. The readings as published."""
        kinds = self.kinds_of(user) if kinds is None else kinds
        now = self.clock()
        published = []
        for reading in readings:
            body = reading.to_dict()
            published.append(body)
            await self.publisher.publish(bio_channel(user), body, history=DataKind.BIOMETRICS in kinds)
            match reading:
                case HeartRateReading(bpm=float() as bpm) if math.isfinite(bpm):
                    self.states.heart_rate(user, bpm)
                    self.directory.heart_rate(user, HeartRateSample(now, bpm))
                case ArousalReading(index=float() as index) if math.isfinite(index):
                    await self._take_state(user, self.states.aroused(user, index, now), client, kinds)
                    sample = self.states.last_body(user)
                    if sample is not None and DataKind.BIOMETRICS in kinds:
                        await self.people.body(user, [sample])
        return published

    async def stop_biometrics(self, call: RpcCall) -> Any:
        """``bio.stop``: close the caller's stream."""
        return {"stopped": self.bio.stop(_user(call))}

    # -- thyroid and events over RPC ----------

    async def thyroid_status(self, call: RpcCall) -> Any:
        """``thyroid.status``: as ``GET /thyroid/status``."""
        return self.thyroid.status(self.clock())

    async def replay(self, call: RpcCall) -> Any:
        """``events.replay``: the caller's own events in a window of the log (``since_ms``/``until_ms``)."""
        user = _user(call)
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
