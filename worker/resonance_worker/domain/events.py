"""Immutable event records: the event-sourcing format of the living core.

Every state change, resonance result, presence change and thyroid release is an
:class:`Event` appended to a durable log and projected into the graph. An event
is ``(type, subject, at, payload)`` plus a deterministic ``id``: the first 32 hex
digits of SHA-256 over the canonical JSON of those four fields and the format
version. The same fact always gets the same id, so a projector that records
the ids it applied is idempotent, and a replayed or re-sent event is a no-op.

Two facts that differ in nothing (same type, subject, time and payload) are one
event; a producer that can emit genuinely repeated facts puts a sequence number
in the payload.

The wire form is one JSON object: ``{"v": 1, "id", "type", "subject", "at", "payload"}``.
Parsing checks everything, including that the id matches the content.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

FORMAT_VERSION = 1
SUBJECT_MAX_CHARS = 256
PAYLOAD_MAX_BYTES = 64 * 1024


class EventType(StrEnum):
    """What happened. ``subject`` says to whom or where (see each member)."""

    STATE_CHANGED = "state_changed"
    """A person's emotional state; subject = person id."""
    RESONANCE_COMPUTED = "resonance_computed"
    """A room's resonance; subject = room id."""
    PRESENCE_CHANGED = "presence_changed"
    """Someone joined or left a room; subject = room id."""
    PATTERN_DETECTED = "pattern_detected"
    """A room pattern (convergence, divergence, leader-follower); subject = room id."""
    QUESTION_ASKED = "question_asked"
    """A reflective question put to a person; subject = person id."""
    THYROID_RELEASED = "thyroid_released"
    """The thyroid rose (stressed, overloaded); subject = worker id."""
    THYROID_RELAXED = "thyroid_relaxed"
    """The thyroid stepped down; subject = worker id."""


class EventFormatError(ValueError):
    """A record that is not a valid event."""


def canonical_json(value: object) -> str:
    """Sorted keys, no spaces, no NaN/Infinity, UTF-8 kept: one text per value."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise EventFormatError(f"payload is not plain JSON: {exc}") from exc


def event_id(event_type: EventType, subject: str, at: float, payload_json: str) -> str:
    """The deterministic id of an event's content."""
    content = canonical_json(
        {"v": FORMAT_VERSION, "type": event_type.value, "subject": subject, "at": at, "payload": payload_json}
    )
    return hashlib.sha256(content.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Event:
    """One immutable fact. Build it with :meth:`create`; ``payload`` returns a fresh copy."""

    id: str
    type: EventType
    subject: str
    at: float
    payload_json: str
    """The payload as canonical JSON: stored as text so nobody can mutate it in place."""

    @classmethod
    def create(
        cls, event_type: EventType | str, subject: str, at: float, payload: Mapping[str, Any]
    ) -> Event:
        """Validate and build an event; the id is derived from the content."""
        try:
            kind = EventType(event_type)
        except ValueError:
            raise EventFormatError(f"unknown event type {event_type!r}") from None
        if not isinstance(subject, str) or not subject or len(subject) > SUBJECT_MAX_CHARS:
            raise EventFormatError(
                f"subject must be a non-empty string of at most {SUBJECT_MAX_CHARS} characters"
            )
        if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
            raise EventFormatError("at must be a finite number of seconds")
        if not isinstance(payload, Mapping):
            raise EventFormatError("payload must be a JSON object")
        payload_json = canonical_json(payload)
        try:
            subject.encode("utf-8")
            size = len(payload_json.encode("utf-8"))
        except UnicodeEncodeError:
            raise EventFormatError("subject or payload is not valid Unicode (a lone surrogate)") from None
        if size > PAYLOAD_MAX_BYTES:
            raise EventFormatError(f"payload is larger than {PAYLOAD_MAX_BYTES} bytes")
        at = float(at)
        return cls(event_id(kind, subject, at, payload_json), kind, subject, at, payload_json)

    @property
    def payload(self) -> dict[str, Any]:
        """A fresh copy of the payload."""
        result: dict[str, Any] = json.loads(self.payload_json)
        return result

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": FORMAT_VERSION,
            "id": self.id,
            "type": self.type.value,
            "subject": self.subject,
            "at": self.at,
            "payload": self.payload,
        }

    def to_json(self) -> str:
        """The wire form (canonical JSON)."""
        return canonical_json(self.to_dict())

    @classmethod
    def from_dict(cls, raw: object) -> Event:
        """Parse the wire form (decoded); refuses unknown versions, fields and a tampered id."""
        if not isinstance(raw, Mapping):
            raise EventFormatError("an event must be a JSON object")
        expected = {"v", "id", "type", "subject", "at", "payload"}
        if set(raw) != expected:
            missing, extra = sorted(expected - set(raw)), sorted(set(map(str, raw)) - expected)
            raise EventFormatError(f"event fields wrong: missing {missing}, unexpected {extra}")
        if raw["v"] != FORMAT_VERSION or isinstance(raw["v"], bool):
            raise EventFormatError(f"unsupported event format version {raw['v']!r}")
        event = cls.create(raw["type"], raw["subject"], raw["at"], raw["payload"])
        if raw["id"] != event.id:
            raise EventFormatError("event id does not match its content")
        return event

    @classmethod
    def from_json(cls, text: str | bytes) -> Event:
        try:
            raw = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise EventFormatError(f"not JSON: {exc}") from exc
        return cls.from_dict(raw)


# ------------------------------------------------------------------ typed constructors

NOT_IN_GRAPH = "not_in_graph"
"""Payload flag: the person did not consent to the graph (``domain.consent``)."""


def state_changed(
    person_id: str,
    at: float,
    state: Mapping[str, Any],
    *,
    session_id: str | None = None,
    seq: int | None = None,
    graph: bool = True,
) -> Event:
    """A person's state changed. ``state`` is an EmotionalState.to_dict(); ``seq`` separates equal repeats;
    ``graph=False``: the person did not consent to the graph (:func:`kept_out_of_graph`)."""
    payload: dict[str, Any] = {"state": dict(state), "session_id": session_id}
    if seq is not None:
        payload["seq"] = seq
    if not graph:
        payload[NOT_IN_GRAPH] = True
    return Event.create(EventType.STATE_CHANGED, person_id, at, payload)


def resonance_computed(room_id: str, at: float, resonance: Mapping[str, Any]) -> Event:
    """A room's resonance result (RoomResonance.to_dict())."""
    return Event.create(EventType.RESONANCE_COMPUTED, room_id, at, {"resonance": dict(resonance)})


def presence_changed(
    room_id: str, at: float, person_id: str, *, joined: bool, client_id: str | None = None, graph: bool = True
) -> Event:
    """Someone joined (``joined=True``) or left a room."""
    payload: dict[str, Any] = {"person_id": person_id, "joined": joined, "client_id": client_id}
    if not graph:
        payload[NOT_IN_GRAPH] = True
    return Event.create(EventType.PRESENCE_CHANGED, room_id, at, payload)


def pattern_detected(room_id: str, at: float, pattern: Mapping[str, Any]) -> Event:
    """A room pattern (RoomPattern.to_dict())."""
    return Event.create(EventType.PATTERN_DETECTED, room_id, at, {"pattern": dict(pattern)})


def question_asked(person_id: str, at: float, question: Mapping[str, Any], *, graph: bool = True) -> Event:
    """A reflective question (ReflectiveQuestion.to_dict())."""
    payload: dict[str, Any] = {"question": dict(question)}
    if not graph:
        payload[NOT_IN_GRAPH] = True
    return Event.create(EventType.QUESTION_ASKED, person_id, at, payload)


def kept_out_of_graph(event: Event) -> bool:
    """Whether the person this event is about did not consent to the graph: logged, never projected."""
    return NOT_IN_GRAPH in event.payload_json and event.payload.get(NOT_IN_GRAPH) is True


def thyroid_released(worker_id: str, at: float, insight: Mapping[str, Any]) -> Event:
    """The thyroid released (ThyroidInsight.to_dict())."""
    return Event.create(EventType.THYROID_RELEASED, worker_id, at, {"insight": dict(insight)})


def thyroid_relaxed(worker_id: str, at: float, *, state: str, previous: str, pain: float) -> Event:
    """The thyroid stepped down from ``previous`` to ``state``."""
    payload = {"state": state, "previous": previous, "pain": pain}
    return Event.create(EventType.THYROID_RELAXED, worker_id, at, payload)
