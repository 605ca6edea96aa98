"""Event records: deterministic ids, canonical JSON, strict parsing."""

from __future__ import annotations

import hashlib
import json
import math

import pytest
from resonance_worker.domain import events
from resonance_worker.domain.events import (
    PAYLOAD_MAX_BYTES,
    Event,
    EventFormatError,
    EventType,
    canonical_json,
)


def test_the_id_is_sha256_of_the_canonical_content() -> None:
    event = Event.create("state_changed", "ann", 12.5, {"b": [1, 2], "a": "é"})
    assert event.payload_json == '{"a":"é","b":[1,2]}'
    content = (
        '{"at":12.5,"payload":"{\\"a\\":\\"é\\",\\"b\\":[1,2]}","subject":"ann","type":"state_changed","v":1}'
    )
    assert event.id == hashlib.sha256(content.encode()).hexdigest()[:32]
    assert len(event.id) == 32


def test_the_same_fact_gets_the_same_id_and_any_difference_a_new_one() -> None:
    base = Event.create(EventType.STATE_CHANGED, "ann", 10, {"x": 1, "y": 2})
    assert Event.create(EventType.STATE_CHANGED, "ann", 10.0, {"y": 2, "x": 1}) == base
    others = [
        Event.create(EventType.RESONANCE_COMPUTED, "ann", 10, {"x": 1, "y": 2}),
        Event.create(EventType.STATE_CHANGED, "bo", 10, {"x": 1, "y": 2}),
        Event.create(EventType.STATE_CHANGED, "ann", 10.001, {"x": 1, "y": 2}),
        Event.create(EventType.STATE_CHANGED, "ann", 10, {"x": 1, "y": 3}),
    ]
    assert len({base.id, *(other.id for other in others)}) == 5


def test_round_trip_through_json() -> None:
    event = events.state_changed(
        "ann", 3.25, {"valence": 0.5, "arousal": 0.1, "label": "спокойно"}, session_id="s1", seq=4
    )
    text = event.to_json()
    assert json.loads(text) == {
        "v": 1,
        "id": event.id,
        "type": "state_changed",
        "subject": "ann",
        "at": 3.25,
        "payload": {
            "state": {"valence": 0.5, "arousal": 0.1, "label": "спокойно"},
            "session_id": "s1",
            "seq": 4,
        },
    }
    assert Event.from_json(text) == event
    assert Event.from_json(text.encode()) == event


def test_the_payload_cannot_be_mutated_through_the_event() -> None:
    source = {"list": [1]}
    event = Event.create("presence_changed", "room", 0, source)
    source["list"].append(2)
    copy = event.payload
    copy["list"].append(3)
    assert event.payload == {"list": [1]}
    with pytest.raises(AttributeError):
        event.at = 5  # type: ignore[misc]


def test_typed_constructors() -> None:
    cases = [
        (
            events.resonance_computed("r1", 1, {"score": 0.5}),
            EventType.RESONANCE_COMPUTED,
            {"resonance": {"score": 0.5}},
        ),
        (
            events.presence_changed("r1", 1, "ann", joined=True),
            EventType.PRESENCE_CHANGED,
            {"person_id": "ann", "joined": True, "client_id": None},
        ),
        (events.pattern_detected("r1", 1, {"kind": "convergence"}), EventType.PATTERN_DETECTED, None),
        (
            events.question_asked("ann", 1, {"text": "?"}),
            EventType.QUESTION_ASKED,
            {"question": {"text": "?"}},
        ),
        (
            events.thyroid_released("w1", 1, {"pain": 12}),
            EventType.THYROID_RELEASED,
            {"insight": {"pain": 12}},
        ),
        (
            events.thyroid_relaxed("w1", 1, state="calm", previous="stressed", pain=5.0),
            EventType.THYROID_RELAXED,
            {"state": "calm", "previous": "stressed", "pain": 5.0},
        ),
        (events.state_changed("ann", 1, {"valence": 0}), EventType.STATE_CHANGED, None),
    ]
    for event, kind, payload in cases:
        assert event.type is kind
        if payload is not None:
            assert event.payload == payload
        assert Event.from_json(event.to_json()) == event
    assert "seq" not in events.state_changed("ann", 1, {"valence": 0}).payload


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nope", "s", 0, {}), "unknown event type"),
        (("state_changed", "", 0, {}), "subject"),
        (("state_changed", "x" * 257, 0, {}), "subject"),
        (("state_changed", 5, 0, {}), "subject"),
        (("state_changed", "s", math.nan, {}), "finite"),
        (("state_changed", "s", True, {}), "finite"),
        (("state_changed", "s", "0", {}), "finite"),
        (("state_changed", "s", 0, [1]), "JSON object"),
        (("state_changed", "s", 0, {"x": math.inf}), "plain JSON"),
        (("state_changed", "s", 0, {"x": object()}), "plain JSON"),
        (("state_changed", "s", 0, {"x": "y" * PAYLOAD_MAX_BYTES}), "larger than"),
        (("state_changed", "s", 0, {"x": "\ud800"}), "lone surrogate"),
        (("state_changed", "\udfff", 0, {}), "lone surrogate"),
    ],
)
def test_bad_events_are_refused(args: tuple[object, ...], message: str) -> None:
    with pytest.raises(EventFormatError, match=message):
        Event.create(*args)  # type: ignore[arg-type]


def _wire(**changes: object) -> str:
    raw = Event.create("state_changed", "ann", 1, {"a": 1}).to_dict()
    raw.update(changes)
    return json.dumps(raw)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        ("[1]", "JSON object"),
        ('{"v": 1}', "missing"),
        (_wire(extra=1), "unexpected \\['extra'\\]"),
        (_wire(v=2), "version 2"),
        (_wire(v=True), "version True"),
        (_wire(id="0" * 32), "does not match"),
        (_wire(at=2), "does not match"),
        (_wire(type="bogus"), "unknown event type"),
    ],
)
def test_malformed_wire_records_are_refused(text: str | bytes, message: str) -> None:
    with pytest.raises(EventFormatError, match=message):
        Event.from_json(text)


def test_canonical_json_is_order_independent() -> None:
    assert canonical_json({"b": 1, "a": {"d": 2, "c": 3}}) == '{"a":{"c":3,"d":2},"b":1}'
