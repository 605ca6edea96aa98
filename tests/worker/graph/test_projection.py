"""Event → statement plans: payload validation (pure, no database)."""

from __future__ import annotations

from typing import Any

import pytest
from resonance_worker.domain import events
from resonance_worker.domain.events import Event, EventType
from resonance_worker.graph import ProjectionInputError, plan
from resonance_worker.graph.projection import resonance_pairs

from tests.worker.graph.conftest import state


def test_a_state_plan_carries_the_state_and_session() -> None:
    event = state("ann", 10.0, -0.5, 0.25, label="tired", session="s1")
    result = plan(event)
    assert result.parameters == {
        "id": event.id,
        "type": "state_changed",
        "subject": "ann",
        "at": 10.0,
        "valence": -0.5,
        "arousal": 0.25,
        "label": "tired",
        "source": "self_report",
        "session_id": "s1",
    }
    assert result.statement.lstrip().startswith("MERGE (ev:Event {id: $id})")


def test_presence_plans_differ_by_direction() -> None:
    joined = plan(events.presence_changed("room", 1.0, "ann", joined=True, client_id="c1"))
    left = plan(events.presence_changed("room", 2.0, "ann", joined=False))
    assert ":JOINED" in joined.statement and ":LEFT" not in joined.statement
    assert ":LEFT" in left.statement
    assert left.parameters["client_id"] is None and joined.parameters["person_id"] == "ann"


def test_resonance_pairs_from_members_get_the_room_score_once_each() -> None:
    members, pairs = resonance_pairs({"score": 0.75, "member_ids": ["cy", "ann", "bob", "ann"]})
    assert members == ["ann", "bob", "cy"]
    assert pairs == [
        {"a": "ann", "b": "bob", "score": 0.75},
        {"a": "ann", "b": "cy", "score": 0.75},
        {"a": "bob", "b": "cy", "score": 0.75},
    ]
    assert resonance_pairs({"score": None, "member_ids": ["a", "b"]}) == (["a", "b"], [])
    assert resonance_pairs({"score": 0.5}) == ([], [])


def test_explicit_pairs_keep_their_own_scores_in_order() -> None:
    _, pairs = resonance_pairs({"score": 0.9, "pairs": [{"a": "bob", "b": "ann", "score": -0.25}]})
    assert pairs == [{"a": "ann", "b": "bob", "score": -0.25}]


def _event(kind: EventType, payload: dict[str, Any]) -> Event:
    return Event.create(kind, "subject", 1.0, payload)


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (_event(EventType.STATE_CHANGED, {}), "payload.state must be an object"),
        (_event(EventType.STATE_CHANGED, {"state": {"valence": 2, "arousal": 0.5}}), "valence"),
        (_event(EventType.STATE_CHANGED, {"state": {"valence": 0, "arousal": "high"}}), "arousal"),
        (_event(EventType.STATE_CHANGED, {"state": {"valence": True, "arousal": 0.5}}), "valence"),
        (_event(EventType.STATE_CHANGED, {"state": {"valence": 0, "arousal": 0, "label": ""}}), "label"),
        (_event(EventType.PRESENCE_CHANGED, {"person_id": "ann", "joined": "yes"}), "joined"),
        (_event(EventType.PRESENCE_CHANGED, {"joined": True}), "person_id"),
        (_event(EventType.RESONANCE_COMPUTED, {"resonance": {"score": 1.5}}), "score"),
        (_event(EventType.RESONANCE_COMPUTED, {"resonance": {"member_ids": "ann"}}), "member_ids"),
        (_event(EventType.RESONANCE_COMPUTED, {"resonance": {"pairs": {}}}), "pairs"),
        (_event(EventType.RESONANCE_COMPUTED, {"resonance": {"pairs": [1]}}), "pairs"),
        (
            _event(
                EventType.RESONANCE_COMPUTED, {"resonance": {"pairs": [{"a": "x", "b": "x", "score": 1}]}}
            ),
            "two different",
        ),
        (_event(EventType.RESONANCE_COMPUTED, {"resonance": {"members": -1}}), "members"),
        (_event(EventType.PATTERN_DETECTED, {"pattern": {"strength": 1}}), "kind"),
        (_event(EventType.QUESTION_ASKED, {"question": {"key": "k"}}), "text"),
        (_event(EventType.THYROID_RELEASED, {"insight": {"pain": 1}}), "state"),
        (_event(EventType.THYROID_RELEASED, {"insight": {"state": "stressed", "pain": -1}}), "pain"),
        (_event(EventType.THYROID_RELAXED, {"previous": "stressed"}), "state"),
    ],
)
def test_unusable_payloads_are_refused_with_the_reason(event: Event, message: str) -> None:
    with pytest.raises(ProjectionInputError, match=message):
        plan(event)


def test_every_event_type_has_a_plan() -> None:
    samples = [
        state("ann", 1.0, 0.0, 0.0),
        events.presence_changed("r", 1.0, "ann", joined=True),
        events.resonance_computed("r", 1.0, {"score": 0.5, "member_ids": ["a", "b"], "members": 2}),
        events.pattern_detected("r", 1.0, {"kind": "convergence", "strength": 0.3, "evidence": {"x": 1}}),
        events.question_asked("ann", 1.0, {"key": "k", "text": "What was happening then?"}),
        events.thyroid_released("w1", 1.0, {"state": "stressed", "pain": 12.0, "threshold": 10.0}),
        events.thyroid_relaxed("w1", 2.0, state="calm", previous="stressed", pain=1.0),
    ]
    assert {s.type for s in samples} == set(EventType)
    statements = {plan(sample).statement for sample in samples}
    assert len(statements) == len(samples)
