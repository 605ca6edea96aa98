"""Resonance rooms across workers, sans I/O: who is in each room, what this worker shares of its
members, how it mirrors the others', and which worker publishes.

A room's members may be connected to different workers. Each worker writes, for each of its own
members, a shared entry (:meth:`RoomDirectory.entries_to_share`: the person's recent heart rates
and states) as a presence entry of the room's internal channel, reads every entry back and hands
them to :meth:`RoomDirectory.merge`, which mirrors the other workers' members into the room's
:class:`~resonance_worker.domain.resonance.RoomMonitor`. The first worker by name leads
(:meth:`RoomDirectory.leads`): only it ticks the monitor and publishes. The engine round trips are
the living core's (``living.core``); this module only decides. Time is passed in. The whole story:
docs/living-core.md, "Rooms (cluster-wide)".
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson

from resonance_worker.domain.resonance import (
    HeartRateSample,
    MemberState,
    ResonanceConfig,
    ResonancePublisher,
    RoomMonitor,
)
from resonance_worker.living_settings import LivingSettings

ROOM_NAMESPACE = "room"
ROOM_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ROOM_STATE_PREFIX = "__living:room:"
"""Internal channels whose presence entries carry each worker's room members (no client can name them)."""
SHARE_HORIZON_S = 10.0
"""How far back a member's shared entry carries heart rates and states (several ticks, so none is missed)."""
SHARED_HEART_RATES = 64
SHARED_STATES = 32


def room_channel(room: str) -> str:
    """Where a room's resonance, patterns, questions and states are published."""
    return f"{ROOM_NAMESPACE}:{room}"


def room_id_of(data: object) -> str | None:
    """The ``room`` of an RPC's data when it is a valid room id (1-64 letters, digits, '_', '-')."""
    room = data.get("room") if isinstance(data, dict) else None
    return room if isinstance(room, str) and ROOM_ID.match(room) else None


@dataclass
class Room:
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

    def has(self, user: str) -> bool:
        """Whether ``user`` is a member through a connection on this worker."""
        return user in self.members.values()


TimedState = tuple[float, MemberState]


@dataclass(frozen=True, slots=True)
class SharedEntry:
    """One member's entry in a room's shared presence, as another worker wrote it."""

    worker: str
    user: str
    heart: list[HeartRateSample]
    """Recent heart rates, oldest first."""
    states: list[TimedState]
    """Recent states with their times, oldest first."""

    @classmethod
    def parse(cls, raw: bytes) -> SharedEntry:
        """Decode an entry; ``ValueError`` when it is malformed."""
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
        return cls(worker, user, heart, states)

    @property
    def newest(self) -> float:
        """When its latest state was taken (-inf without states)."""
        return self.states[-1][0] if self.states else -math.inf


class RoomFullError(Exception):
    """Joining would take the room over ``room_max_members``."""


class RoomDirectory:
    """The rooms with members on this worker, and what it shares of its members."""

    def __init__(self, origin: str, settings: LivingSettings) -> None:
        self.origin = origin
        self.settings = settings
        self.resonance_config = ResonanceConfig(
            window_s=settings.room_window_seconds,
            min_overlap_s=min(settings.room_min_overlap_seconds, settings.room_window_seconds),
        )
        self.rooms: dict[str, Room] = {}
        # Per person: recent heart rates (t, bpm) and states (t, valence, arousal), shared with the
        # other workers that host members of the person's rooms.
        self._recent_heart: dict[str, deque[tuple[float, float]]] = {}
        self._recent_states: dict[str, deque[tuple[float, float, float]]] = {}

    # -- joining and leaving --------------------------------------------------------------------

    def room(self, room_id: str) -> Room:
        """The room if this worker has it, else a new empty one (kept only once someone is admitted)."""
        room = self.rooms.get(room_id)
        if room is not None:
            return room
        publisher = ResonancePublisher(
            cadence_s=self.settings.room_cadence_seconds,
            min_change=self.settings.room_min_change,
            min_gap_s=min(1.0, self.settings.room_cadence_seconds),
        )
        return Room(RoomMonitor(room_id, self.resonance_config, publisher))

    def admit(
        self, room_id: str, room: Room, client: str, user: str, state: MemberState | None, now: float
    ) -> None:
        """Add ``user``'s connection ``client`` (with their state in rooms, if any); ``RoomFullError``
        when that would take the whole room, on every worker, over its limit."""
        if client not in room.members and len(set(room.users()) | {user}) > self.settings.room_max_members:
            raise RoomFullError(room_id)
        self.rooms[room_id] = room
        room.members[client] = user
        if state is not None:
            self._keep_state(user, state, now)
            room.monitor.update_state(state, now)

    def leave(self, room_id: str, room: Room, client: str) -> tuple[str, bool]:
        """Remove connection ``client``: its user, and whether that was the user's last connection
        in the room here (then the user's shared entry should be removed too)."""
        user = room.members.pop(client)
        if room.has(user):
            return user, False
        room.monitor.remove_member(user)
        if not room.members:
            del self.rooms[room_id]
        return user, True

    # -- what members feel ----------------------------------------------------------------------------

    def heart_rate(self, user: str, sample: HeartRateSample) -> None:
        """A heart rate of ``user``: kept for sharing and added to the rooms they are in here."""
        recent = self._recent_heart.setdefault(user, deque(maxlen=SHARED_HEART_RATES))
        recent.append((sample.t, sample.bpm))
        for room in self.rooms.values():
            if room.has(user):
                room.monitor.add_heart_rate(user, sample)

    def state(self, user: str, state: MemberState, at: float) -> list[str]:
        """``user``'s state in rooms as of ``at``: kept for sharing and given to the rooms they are
        in here, whose ids are returned (the state is published on each)."""
        self._keep_state(user, state, at)
        joined = []
        for room_id, room in self.rooms.items():
            if room.has(user):
                room.monitor.update_state(state, at)
                joined.append(room_id)
        return joined

    def _keep_state(self, user: str, state: MemberState, at: float) -> None:
        recent = self._recent_states.setdefault(user, deque(maxlen=SHARED_STATES))
        recent.append((at, state.valence, state.arousal))

    # -- across workers ----------------------------------------------------------------------------------

    @property
    def entry_ttl(self) -> float:
        """How long a shared entry lives unless rewritten (a dead worker's members leave with it)."""
        return max(5.0, 5 * self.settings.room_tick_seconds)

    def entry_client(self, user: str) -> str:
        """The client id of ``user``'s shared entry from this worker."""
        return f"{user}@{self.origin}"

    def entries_to_share(self, room: Room, now: float) -> list[tuple[str, str, bytes]]:
        """(user, client id, entry) for each of this worker's members of ``room``."""
        horizon = now - SHARE_HORIZON_S
        shared = []
        for user in sorted(set(room.members.values())):
            states = list(self._recent_states.get(user, ()))
            recent_states = [s for s in states if s[0] >= horizon] or states[-1:]  # the latest always
            entry = {
                "worker": self.origin,
                "user": user,
                "hr": [h for h in self._recent_heart.get(user, ()) if h[0] >= horizon],
                "states": recent_states,
            }
            shared.append((user, self.entry_client(user), orjson.dumps(entry)))
        return shared

    def merge(self, room: Room, entries: Iterable[tuple[str, bytes | None]]) -> list[tuple[str, str]]:
        """Mirror the other workers' members from the room's shared entries (client id, JSON): heart
        rates and states newer than those taken before are added, members whose entries are gone
        removed. A person also connected here is this worker's own member: its view wins. Returns
        the malformed entries (client id, problem), which are skipped."""
        local = set(room.members.values())
        workers = {self.origin}
        found: dict[str, SharedEntry] = {}
        malformed = []
        for client, raw in entries:
            if raw is None:
                continue
            try:
                entry = SharedEntry.parse(raw)
            except ValueError as exc:
                malformed.append((client, str(exc)))
                continue
            if entry.worker == self.origin:
                continue
            workers.add(entry.worker)
            if entry.user not in local and (
                entry.user not in found or entry.newest > found[entry.user].newest
            ):
                found[entry.user] = entry
        for user in [u for u in room.remote if u not in found]:
            del room.remote[user]
            room.seen.pop(user, None)
            if user not in local:
                room.monitor.remove_member(user)
        for user, entry in found.items():
            room.remote[user] = entry.worker
            last_heart, last_state = room.seen.get(user, (-math.inf, -math.inf))
            for sample in entry.heart:
                if sample.t > last_heart:
                    room.monitor.add_heart_rate(user, sample)
                    last_heart = sample.t
            for at, state in entry.states:
                if at > last_state:
                    room.monitor.update_state(state, at)
                    last_state = at
            room.seen[user] = (last_heart, last_state)
        room.workers = frozenset(workers)
        return malformed

    def alone(self, room: Room) -> None:
        """The entries could not be read: carry on with what is known, as the only worker."""
        room.workers = frozenset({self.origin})

    def leads(self, room: Room, now: float) -> bool:
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

    # -- memory -------------------------------------------------------------------------------------------

    def known(self) -> set[str]:
        """People of whom something is kept for sharing."""
        return set(self._recent_heart) | set(self._recent_states)

    def forget(self, user: str) -> None:
        self._recent_heart.pop(user, None)
        self._recent_states.pop(user, None)
