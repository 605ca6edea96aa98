"""The room directory, sans I/O: admitting and leaving, the shared entries, the merge of the other
workers' entries, and the leader — time passed in, no engine."""

from __future__ import annotations

import orjson
import pytest
from resonance_worker.domain.resonance import HeartRateSample, MemberState
from resonance_worker.living.rooms import (
    RoomDirectory,
    RoomFullError,
    SharedEntry,
    room_channel,
    room_id_of,
)
from resonance_worker.living_settings import LivingSettings

SETTINGS = LivingSettings(room_tick_seconds=1.0, room_max_members=3)


def entry(
    worker: str, user: str, hr: list[tuple[float, float]], states: list[tuple[float, float, float]]
) -> bytes:
    return orjson.dumps({"worker": worker, "user": user, "hr": hr, "states": states})


def test_room_ids_and_channels() -> None:
    assert room_id_of({"room": "team_1-a"}) == "team_1-a"
    assert room_id_of({"room": "x" * 65}) is None
    assert room_id_of({"room": "a b"}) is None
    assert room_id_of(["room"]) is None
    assert room_channel("r") == "room:r"


def test_admitting_sharing_and_leaving() -> None:
    rooms = RoomDirectory("w-a", SETTINGS)
    room = rooms.room("r")
    assert "r" not in rooms.rooms  # kept only once someone is admitted
    rooms.admit("r", room, "c1", "ann", MemberState("ann", 0.5, 0.5), now=100.0)
    rooms.admit("r", room, "c2", "ann", None, now=101.0)
    rooms.admit("r", room, "c3", "bob", None, now=101.0)
    assert rooms.room("r") is room and room.users() == ["ann", "bob"]
    rooms.heart_rate("ann", HeartRateSample(95.0, 60.0))  # older than the horizon at 106
    rooms.heart_rate("ann", HeartRateSample(105.0, 70.0))
    shared = {user: orjson.loads(raw) for user, _, raw in rooms.entries_to_share(room, now=106.0)}
    assert shared["ann"]["hr"] == [[105.0, 70.0]] and shared["ann"]["states"] == [[100.0, 0.5, 0.5]]
    assert shared["bob"] == {"worker": "w-a", "user": "bob", "hr": [], "states": []}
    later = dict((user, orjson.loads(raw)) for user, _, raw in rooms.entries_to_share(room, now=500.0))
    assert later["ann"]["states"] == [[100.0, 0.5, 0.5]]  # the latest state always goes along
    assert [client for _, client, _ in rooms.entries_to_share(room, 106.0)] == ["ann@w-a", "bob@w-a"]
    assert rooms.leave("r", room, "c1") == ("ann", False)  # still here through c2
    assert rooms.leave("r", room, "c2") == ("ann", True)
    assert rooms.leave("r", room, "c3") == ("bob", True)
    assert rooms.rooms == {}


def test_a_full_room_refuses_a_newcomer_but_not_a_members_second_connection() -> None:
    rooms = RoomDirectory("w-a", SETTINGS)
    room = rooms.room("r")
    for n, user in enumerate(["ann", "bob"]):
        rooms.admit("r", room, f"c{n}", user, None, 0.0)
    room.remote["cy"] = "w-b"  # three with the other worker's member
    with pytest.raises(RoomFullError):
        rooms.admit("r", room, "c9", "dee", None, 0.0)
    rooms.admit("r", room, "c8", "ann", None, 0.0)
    assert room.members["c8"] == "ann"


def test_the_merge_mirrors_other_workers_and_own_members_win() -> None:
    rooms = RoomDirectory("w-b", SETTINGS)
    room = rooms.room("r")
    rooms.admit("r", room, "c1", "bob", MemberState("bob", 0.0, 0.5), 0.0)
    entries = [
        ("ann@w-a", entry("w-a", "ann", [(1.0, 70.0), (2.0, 72.0)], [(2.0, 0.4, 0.6)])),
        ("bob@w-a", entry("w-a", "bob", [(1.0, 80.0)], [(1.0, -0.5, 0.5)])),  # bob is ours: ours wins
        ("bob@w-b", entry("w-b", "bob", [], [])),  # our own entry
        ("x@w-z", b'{"worker": 1}'),
        ("empty", None),
    ]
    malformed = rooms.merge(room, entries)
    assert [client for client, _ in malformed] == ["x@w-z"]
    assert room.remote == {"ann": "w-a"} and room.workers == {"w-a", "w-b"}
    assert room.seen["ann"] == (2.0, 2.0)
    assert sorted(room.monitor.members) == ["ann", "bob"]
    # Nothing older than what was taken is added again; a newer state is.
    rooms.merge(room, [("ann@w-a", entry("w-a", "ann", [(2.0, 72.0), (3.0, 74.0)], [(3.0, 0.5, 0.6)]))])
    assert room.seen["ann"] == (3.0, 3.0)
    # Ann's entry is gone: she leaves the room here.
    rooms.merge(room, [])
    assert room.remote == {} and room.monitor.members == ["bob"] and room.workers == {"w-b"}


def test_the_newest_of_two_entries_for_one_person_is_taken() -> None:
    rooms = RoomDirectory("w-c", SETTINGS)
    room = rooms.room("r")
    rooms.admit("r", room, "c1", "cy", None, 0.0)
    rooms.merge(
        room,
        [
            ("ann@w-a", entry("w-a", "ann", [], [(5.0, 0.1, 0.1)])),
            ("ann@w-b", entry("w-b", "ann", [], [(9.0, 0.2, 0.2)])),
        ],
    )
    assert room.remote == {"ann": "w-b"}
    assert SharedEntry.parse(entry("w", "u", [], [])).newest == float("-inf")


def test_the_first_worker_by_name_leads_after_one_tick_when_not_alone() -> None:
    rooms = RoomDirectory("w-a", SETTINGS)
    room = rooms.room("r")
    room.workers = frozenset({"w-a"})
    assert rooms.leads(room, 10.0)  # alone: at once
    room.workers = frozenset({"w-a", "w-b"})
    room.leader_since = None
    assert not rooms.leads(room, 20.0)  # the previous leader may still publish this tick
    assert not rooms.leads(room, 20.5)
    assert rooms.leads(room, 21.0)
    other = RoomDirectory("w-b", SETTINGS)
    assert not other.leads(room, 21.0)
    assert room.leader_since is None  # the follower's view: nobody it waits for
    rooms.alone(room)
    assert room.workers == {"w-a"}


def test_forgetting_a_person_drops_their_shared_trail() -> None:
    rooms = RoomDirectory("w-a", SETTINGS)
    rooms.heart_rate("ann", HeartRateSample(1.0, 60.0))
    assert rooms.state("bob", MemberState("bob", 0.0, 0.5), 1.0) == []  # in no room
    assert rooms.known() == {"ann", "bob"}
    rooms.forget("ann")
    rooms.forget("bob")
    assert rooms.known() == set()
