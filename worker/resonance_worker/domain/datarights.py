"""Whose data a record is, and of which kind: the pure rules behind ``user.export``,
``user.erase`` and retention (docs/data-rights.md).

A person's data is found where it is kept, by these rules:

- a **channel publication** is the person's when its publisher is the person (header ``u``), when
  the channel is limited to the person (``bio:#ann``, ``personal:#ann``: ``USER_BOUNDARY``), or when
  its data is a JSON object naming the person under ``user`` (the living core's room messages);
- an **event** is the person's when the person is its subject or is named in its payload
  (``person_id``, ``member_ids``, pair members ``a``/``b``, ``leader``/``follower``, ``user``) —
  a room's resonance names every member, so erasing one member removes that result from the log;
- **presence** entries carry their user; **person state** keys are named by ``domain.keys``.

Kinds, for retention: body readings are ``biometrics`` (the ``bio`` namespace); states, questions and
what a room computed from its members' states and heart rates are ``emotions``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from resonance_worker.domain.channels import USER_BOUNDARY
from resonance_worker.domain.consent import DataKind
from resonance_worker.domain.events import Event, EventType

PERSON_KEYS = frozenset({"person_id", "member_ids", "a", "b", "leader", "follower", "user", "subject"})
"""Payload keys whose string values (or lists of strings) name people."""

EVENT_KINDS: Mapping[EventType, DataKind] = {
    EventType.STATE_CHANGED: DataKind.EMOTIONS,
    EventType.QUESTION_ASKED: DataKind.EMOTIONS,
    EventType.RESONANCE_COMPUTED: DataKind.EMOTIONS,
    EventType.PATTERN_DETECTED: DataKind.EMOTIONS,
}
"""The kind of each event type that holds personal data (presence and thyroid events are neither)."""

CHANNEL_KINDS: Mapping[str, DataKind] = {"bio": DataKind.BIOMETRICS, "room": DataKind.EMOTIONS}
"""The kind of the publications kept in a namespace's history, for retention."""


def _names(value: Any, key: str | None = None) -> Iterator[str]:
    if isinstance(value, Mapping):
        for inner_key, inner in value.items():
            yield from _names(inner, str(inner_key))
    elif isinstance(value, list):
        for item in value:
            yield from _names(item, key)
    elif isinstance(value, str) and key in PERSON_KEYS:
        yield value


def people_of(event: Event) -> frozenset[str]:
    """Everyone an event is about (its subject only when that is a person)."""
    people = set(_names(event.payload))
    if event.type in (EventType.STATE_CHANGED, EventType.QUESTION_ASKED):
        people.add(event.subject)
    return frozenset(people)


def event_concerns(event: Event, user: str) -> bool:
    return user in people_of(event)


def channel_is_users(channel: str, user: str) -> bool:
    """Whether ``channel`` is limited to ``user`` alone or among others (``ns:#ann,ben``)."""
    _, boundary, users = channel.rpartition(USER_BOUNDARY)
    return bool(boundary) and user in users.split(",")


def publication_concerns(channel: str, publisher: str | None, data: bytes, user: str) -> bool:
    """Whether a kept publication is ``user``'s data (see the module's rules)."""
    if publisher == user or channel_is_users(channel, user):
        return True
    if not data.startswith(b"{"):
        return False
    try:
        decoded = orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return isinstance(decoded, dict) and decoded.get("user") == user


def channel_kind(channel: str) -> DataKind | None:
    namespace, colon, _ = channel.partition(":")
    return CHANNEL_KINDS.get(namespace) if colon else None
