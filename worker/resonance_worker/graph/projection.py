"""How each event becomes graph writes: one Cypher statement and its parameters.

Pure (no driver): :func:`plan` validates the payload and returns a
:class:`Plan`. Every statement starts with the same idempotency guard — it MERGEs
``(:Event {id})`` (unique) and continues only when that node was just created —
so a statement applied twice changes nothing the second time, and returns
``applied`` = 1 the first time, 0 after.

The state chain: a new ``(:State)`` is linked between its predecessor and its
successor *by time* (``at``, ties broken by event id), not by arrival, and the
person's ``LATEST`` edge moves only when it is the newest, so events arriving in
any order end in the same chain. The statement first writes the ``User`` node,
which takes its lock: two projectors inserting states for one person serialise.
Neighbours are found by seeks on the ``State(user_id, at)`` index in index order
(the strictly earlier/later neighbour, and ties at the same time by id), so an
insert costs O(log n) in the person's number of states, not a scan of them. The seeks are
hinted (``USING INDEX``): with statistics from a younger graph the planner may otherwise pick a
label scan for a long chain (seen: 461 database hits for one insert instead of ~40).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import combinations
from typing import Any

from resonance_worker.domain.events import Event, EventType, canonical_json


class ProjectionInputError(ValueError):
    """An event whose payload cannot be projected (it is acknowledged and counted, not retried)."""


@dataclass(frozen=True, slots=True)
class Plan:
    statement: str
    parameters: dict[str, Any]


_GUARD = """
MERGE (ev:Event {id: $id})
ON CREATE SET ev.type = $type, ev.subject = $subject, ev.at = $at, ev._fresh = true
WITH ev, coalesce(ev._fresh, false) AS fresh
REMOVE ev._fresh
WITH ev WHERE fresh
"""

_STATE = (
    _GUARD
    + """
MERGE (u:User {id: $subject})
SET u.states = coalesce(u.states, 0) + 1
CREATE (s:State {id: $id, user_id: $subject, at: $at, valence: $valence, arousal: $arousal,
                 label: $label, source: $source, session_id: $session_id})
WITH u, s
CALL {
  OPTIONAL MATCH (t:State) USING INDEX t:State(user_id, at)
  WHERE t.user_id = $subject AND t.at = $at AND t.id < $id
  WITH t ORDER BY t.id DESC LIMIT 1
  RETURN t AS tie_before
}
CALL {
  OPTIONAL MATCH (e:State) USING INDEX e:State(user_id, at)
  WHERE e.user_id = $subject AND e.at < $at
  WITH e ORDER BY e.user_id DESC, e.at DESC, e.id DESC LIMIT 1
  RETURN e AS earlier
}
CALL {
  OPTIONAL MATCH (t:State) USING INDEX t:State(user_id, at)
  WHERE t.user_id = $subject AND t.at = $at AND t.id > $id
  WITH t ORDER BY t.id ASC LIMIT 1
  RETURN t AS tie_after
}
CALL {
  OPTIONAL MATCH (l:State) USING INDEX l:State(user_id, at)
  WHERE l.user_id = $subject AND l.at > $at
  WITH l ORDER BY l.user_id ASC, l.at ASC, l.id ASC LIMIT 1
  RETURN l AS later
}
WITH u, s, coalesce(tie_before, earlier) AS p, coalesce(tie_after, later) AS n
OPTIONAL MATCH (p)-[old:NEXT]->(n)
DELETE old
FOREACH (_ IN CASE WHEN p IS NULL THEN [] ELSE [1] END | CREATE (p)-[:NEXT]->(s))
FOREACH (_ IN CASE WHEN n IS NULL THEN [] ELSE [1] END | CREATE (s)-[:NEXT]->(n))
WITH u, s, n
OPTIONAL MATCH (u)-[latest:LATEST]->() WHERE n IS NULL
DELETE latest
FOREACH (_ IN CASE WHEN n IS NULL THEN [1] ELSE [] END | CREATE (u)-[:LATEST]->(s))
FOREACH (_ IN CASE WHEN $session_id IS NULL THEN [] ELSE [1] END |
  MERGE (session:Session {id: $session_id})
  MERGE (u)-[:HAD_SESSION]->(session)
  CREATE (s)-[:IN_SESSION]->(session))
RETURN count(*) AS applied
"""
)

_PRESENCE = (
    _GUARD
    + """
MERGE (r:Room {id: $subject})
MERGE (u:User {id: $person_id})
CREATE (u)-[:%s {at: $at, event_id: $id, client_id: $client_id}]->(r)
FOREACH (_ IN CASE WHEN $client_id IS NULL THEN [] ELSE [1] END |
  MERGE (session:Session {id: $client_id})
  MERGE (u)-[:HAD_SESSION]->(session))
RETURN count(*) AS applied
"""
)
_JOINED = _PRESENCE % "JOINED"
_LEFT = _PRESENCE % "LEFT"

_RESONANCE = (
    _GUARD
    + """
MERGE (r:Room {id: $subject})
CREATE (x:Resonance {id: $id, room_id: $subject, at: $at, score: $score, agreement: $agreement,
                     synchrony: $synchrony, members: $members, synced_pairs: $synced_pairs})-[:IN]->(r)
FOREACH (member IN $member_ids |
  MERGE (m:User {id: member})
  CREATE (m)-[:PARTICIPATED_IN]->(x))
FOREACH (pair IN $pairs |
  MERGE (a:User {id: pair.a})
  MERGE (b:User {id: pair.b})
  CREATE (a)-[:RESONATED_WITH {at: $at, score: pair.score, room_id: $subject, event_id: $id}]->(b))
RETURN count(*) AS applied
"""
)

_PATTERN = (
    _GUARD
    + """
MERGE (r:Room {id: $subject})
CREATE (:Pattern {id: $id, room_id: $subject, at: $at, kind: $kind, strength: $strength,
                  evidence: $evidence})-[:IN]->(r)
RETURN count(*) AS applied
"""
)

_QUESTION = (
    _GUARD
    + """
MERGE (u:User {id: $subject})
CREATE (u)-[:WAS_ASKED]->(:Question {id: $id, user_id: $subject, at: $at, key: $key, text: $text,
                                     evidence: $evidence})
RETURN count(*) AS applied
"""
)

_RELEASE = (
    _GUARD
    + """
MERGE (w:Worker {id: $subject})
CREATE (:ThyroidRelease {id: $id, worker_id: $subject, at: $at, state: $state, pain: $pain,
                         threshold: $threshold, top_source: $top_source, trend: $trend,
                         suggested_action: $suggested_action, summary: $summary})-[:ON]->(w)
RETURN count(*) AS applied
"""
)

_RELAXATION = (
    _GUARD
    + """
MERGE (w:Worker {id: $subject})
CREATE (:ThyroidRelaxation {id: $id, worker_id: $subject, at: $at, state: $state, previous: $previous,
                            pain: $pain})-[:ON]->(w)
RETURN count(*) AS applied
"""
)


# ------------------------------------------------------------------ payload readers


def _mapping(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key)
    if not isinstance(value, Mapping):
        raise ProjectionInputError(f"payload.{key} must be an object")
    return value


def _number(
    raw: Mapping[str, Any], key: str, *, low: float | None = None, high: float | None = None, optional: bool
) -> float | None:
    value = raw.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ProjectionInputError(f"{key} must be a finite number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ProjectionInputError(f"{key} must be within [{low}, {high}], got {value}")
    return float(value)


def _required_number(
    raw: Mapping[str, Any], key: str, low: float | None = None, high: float | None = None
) -> float:
    value = _number(raw, key, low=low, high=high, optional=False)
    assert value is not None  # not optional
    return value


def _text(raw: Mapping[str, Any], key: str, *, optional: bool = True) -> str | None:
    value = raw.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise ProjectionInputError(f"{key} must be a non-empty string, got {value!r}")
    return value


def _required_text(raw: Mapping[str, Any], key: str) -> str:
    value = _text(raw, key, optional=False)
    assert value is not None  # not optional
    return value


def _count(raw: Mapping[str, Any], key: str) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProjectionInputError(f"{key} must be a non-negative integer, got {value!r}")
    return value


def resonance_pairs(resonance: Mapping[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """Who resonated with whom: ``(member_ids, pairs)`` from a resonance payload.

    ``pairs`` (``[{"a", "b", "score"}]``) gives per-pair scores; otherwise every pair of
    ``member_ids`` gets the room's score (none when the score is undefined). Each pair
    is stored once, ``a < b``.
    """
    raw_members = resonance.get("member_ids") or []
    if not isinstance(raw_members, list) or not all(isinstance(m, str) and m for m in raw_members):
        raise ProjectionInputError("resonance.member_ids must be a list of non-empty strings")
    members = sorted(set(raw_members))
    raw_pairs = resonance.get("pairs")
    pairs: dict[tuple[str, str], float] = {}
    if raw_pairs is not None:
        if not isinstance(raw_pairs, list):
            raise ProjectionInputError("resonance.pairs must be a list of {a, b, score}")
        for raw in raw_pairs:
            if not isinstance(raw, Mapping):
                raise ProjectionInputError("resonance.pairs must be a list of {a, b, score}")
            a, b = _required_text(raw, "a"), _required_text(raw, "b")
            if a == b:
                raise ProjectionInputError(f"a pair needs two different members, got {a!r} twice")
            pairs[(min(a, b), max(a, b))] = _required_number(raw, "score", -1.0, 1.0)
    else:
        score = _number(resonance, "score", low=0.0, high=1.0, optional=True)
        if score is not None:
            pairs = {pair: score for pair in combinations(members, 2)}
    return members, [{"a": a, "b": b, "score": score} for (a, b), score in sorted(pairs.items())]


def plan(event: Event) -> Plan:
    """The statement that projects ``event``; :class:`ProjectionInputError` if its payload is unusable."""
    payload = event.payload
    base: dict[str, Any] = {
        "id": event.id,
        "type": event.type.value,
        "subject": event.subject,
        "at": event.at,
    }
    match event.type:
        case EventType.STATE_CHANGED:
            state = _mapping(payload, "state")
            return Plan(
                _STATE,
                base
                | {
                    "valence": _required_number(state, "valence", -1.0, 1.0),
                    "arousal": _required_number(state, "arousal", 0.0, 1.0),
                    "label": _text(state, "label"),
                    "source": _text(state, "source"),
                    "session_id": _text(payload, "session_id"),
                },
            )
        case EventType.PRESENCE_CHANGED:
            joined = payload.get("joined")
            if not isinstance(joined, bool):
                raise ProjectionInputError("payload.joined must be true or false")
            person = _required_text(payload, "person_id")
            client = _text(payload, "client_id")
            return Plan(_JOINED if joined else _LEFT, base | {"person_id": person, "client_id": client})
        case EventType.RESONANCE_COMPUTED:
            resonance = _mapping(payload, "resonance")
            members, pairs = resonance_pairs(resonance)
            return Plan(
                _RESONANCE,
                base
                | {
                    "score": _number(resonance, "score", low=0.0, high=1.0, optional=True),
                    "agreement": _number(resonance, "agreement", low=0.0, high=1.0, optional=True),
                    "synchrony": _number(resonance, "synchrony", low=0.0, high=1.0, optional=True),
                    "members": _count(resonance, "members"),
                    "synced_pairs": _count(resonance, "synced_pairs"),
                    "member_ids": members,
                    "pairs": pairs,
                },
            )
        case EventType.PATTERN_DETECTED:
            pattern = _mapping(payload, "pattern")
            return Plan(
                _PATTERN,
                base
                | {
                    "kind": _required_text(pattern, "kind"),
                    "strength": _number(pattern, "strength", optional=True),
                    "evidence": canonical_json(pattern.get("evidence") or {}),
                },
            )
        case EventType.QUESTION_ASKED:
            question = _mapping(payload, "question")
            return Plan(
                _QUESTION,
                base
                | {
                    "key": _text(question, "key"),
                    "text": _required_text(question, "text"),
                    "evidence": canonical_json(question.get("evidence") or {}),
                },
            )
        case EventType.THYROID_RELEASED:
            insight = _mapping(payload, "insight")
            return Plan(
                _RELEASE,
                base
                | {
                    "state": _required_text(insight, "state"),
                    "pain": _number(insight, "pain", low=0.0, optional=True),
                    "threshold": _number(insight, "threshold", low=0.0, optional=True),
                    "top_source": _text(insight, "top_source"),
                    "trend": _text(insight, "trend"),
                    "suggested_action": _text(insight, "suggested_action"),
                    "summary": _text(insight, "summary"),
                },
            )
        case EventType.THYROID_RELAXED:  # pragma: no branch - the match is exhaustive over EventType
            return Plan(
                _RELAXATION,
                base
                | {
                    "state": _required_text(payload, "state"),
                    "previous": _text(payload, "previous"),
                    "pain": _number(payload, "pain", low=0.0, optional=True),
                },
            )
