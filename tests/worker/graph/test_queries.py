"""Queries over a projected graph on the real Neo4j, against hand-computed answers."""

from __future__ import annotations

from typing import Any

import neo4j
import pytest
from resonance_worker.domain import events
from resonance_worker.domain.events import EventType
from resonance_worker.eventlog import MemoryEventLog
from resonance_worker.graph import (
    GraphQueryInputError,
    resonance_partners,
    state_as_of,
    time_of_day,
    timeline,
    transition_matrix,
)
from resonance_worker.graph.queries import replay_window

from tests.worker.graph.conftest import project, state

T0 = 1_700_006_400.0  # 2023-11-15 00:00 UTC
H = 3600.0
# (at, valence, arousal) → quadrant with the default splits (valence 0, arousal 0.5)
ANN = [
    (T0 + 1 * H, 0.5, 0.75),  # 01:00 pleasant_activated
    (T0 + 1.5 * H, 0.25, 0.25),  # 01:30 pleasant_calm
    (T0 + 9 * H, -0.5, 0.75),  # 09:00 unpleasant_activated
    (T0 + 9.5 * H, -0.5, 0.25),  # 09:30 unpleasant_calm
    (T0 + 23 * H, 0.0, 0.5),  # 23:00 pleasant_activated (on both splits)
    (T0 + 25 * H, -0.25, 0.75),  # next day 01:00 unpleasant_activated
]


@pytest.fixture
async def graph(neo4j_driver: neo4j.AsyncDriver) -> neo4j.AsyncDriver:
    items = [state("ann", at, v, a, label=f"s{i}", session="s1") for i, (at, v, a) in enumerate(ANN)]
    items.append(state("bob", T0 + 5 * H, 0.9, 0.9))
    items += [
        events.resonance_computed("r1", 100.0, {"score": 0.8, "member_ids": ["ann", "bob"]}),
        events.resonance_computed("r2", 200.0, {"pairs": [{"a": "cy", "b": "ann", "score": 0.4}]}),
        events.resonance_computed("r1", 300.0, {"score": 0.6, "member_ids": ["bob", "ann"]}),
    ]
    await project(neo4j_driver, items)
    return neo4j_driver


pytestmark = pytest.mark.neo4j


async def test_timeline_is_the_window_oldest_first(graph: neo4j.AsyncDriver) -> None:
    window = await timeline(graph, "ann", T0 + 1.5 * H, T0 + 23 * H)
    assert [(s.at, s.valence, s.arousal) for s in window] == ANN[1:5]  # both ends inclusive
    assert window[0].to_dict() == {
        "id": window[0].id,
        "user_id": "ann",
        "at": T0 + 1.5 * H,
        "valence": 0.25,
        "arousal": 0.25,
        "label": "s1",
        "source": "self_report",
        "session_id": "s1",
    }
    assert len(await timeline(graph, "ann")) == 6
    assert [s.at for s in await timeline(graph, "ann", limit=2)] == [ANN[0][0], ANN[1][0]]
    assert await timeline(graph, "nobody") == []


async def test_state_as_of_is_the_newest_at_or_before(graph: neo4j.AsyncDriver) -> None:
    exact = await state_as_of(graph, "ann", T0 + 9 * H)
    assert exact is not None and (exact.at, exact.valence) == (T0 + 9 * H, -0.5)
    just_before = await state_as_of(graph, "ann", T0 + 9 * H - 0.001)
    assert just_before is not None and just_before.at == T0 + 1.5 * H
    latest = await state_as_of(graph, "ann", T0 + 1000 * H)
    assert latest is not None and latest.at == T0 + 25 * H
    assert await state_as_of(graph, "ann", T0) is None


def _nonzero(counts: dict[str, dict[str, int]]) -> dict[tuple[str, str], int]:
    return {(a, b): n for a, row in counts.items() for b, n in row.items() if n}


async def test_transition_matrix_counts_quadrant_changes_along_next(graph: neo4j.AsyncDriver) -> None:
    matrix = await transition_matrix(graph, "ann")
    assert matrix.total == 5
    assert _nonzero(matrix.counts) == {
        ("pleasant_activated", "pleasant_calm"): 1,
        ("pleasant_calm", "unpleasant_activated"): 1,
        ("unpleasant_activated", "unpleasant_calm"): 1,
        ("unpleasant_calm", "pleasant_activated"): 1,
        ("pleasant_activated", "unpleasant_activated"): 1,
    }
    assert matrix.probabilities["pleasant_activated"]["pleasant_calm"] == 0.5
    assert matrix.probabilities["pleasant_calm"]["unpleasant_activated"] == 1.0

    later = await transition_matrix(graph, "ann", since=T0 + 9 * H)
    assert later.total == 3
    assert set(later.probabilities["pleasant_calm"].values()) == {None}  # never left in the window
    assert (await transition_matrix(graph, "ann", until=T0 + 9.5 * H)).total == 3

    shifted = await transition_matrix(graph, "ann", valence_split=0.3)
    assert _nonzero(shifted.counts) == {
        ("pleasant_activated", "unpleasant_calm"): 1,
        ("unpleasant_calm", "unpleasant_activated"): 2,
        ("unpleasant_activated", "unpleasant_calm"): 1,
        ("unpleasant_activated", "unpleasant_activated"): 1,
    }
    as_json: dict[str, Any] = shifted.to_dict()
    assert as_json["quadrants"][0] == "pleasant_activated" and as_json["valence_split"] == 0.3
    assert (await transition_matrix(graph, "nobody")).total == 0


async def test_time_of_day_buckets_by_local_hour(graph: neo4j.AsyncDriver) -> None:
    utc = await time_of_day(graph, "ann")
    filled = {b.start_hour: b for b in utc.buckets if b.count}
    assert len(utc.buckets) == 24 and set(filled) == {1, 9, 23}
    assert filled[1].count == 3
    assert filled[1].mean_valence == pytest.approx(0.5 / 3)
    assert filled[1].mean_arousal == pytest.approx(1.75 / 3)
    assert (filled[9].count, filled[9].mean_valence, filled[9].mean_arousal) == (2, -0.5, 0.5)
    assert (utc.buckets[0].count, utc.buckets[0].mean_valence) == (0, None)

    plus_two = await time_of_day(graph, "ann", utc_offset_minutes=120)
    assert {b.start_hour: b.count for b in plus_two.buckets if b.count} == {3: 3, 11: 2, 1: 1}

    minus = await time_of_day(graph, "ann", utc_offset_minutes=-90)
    counts = {b.start_hour: b.count for b in minus.buckets if b.count}
    assert counts == {23: 2, 0: 1, 7: 1, 8: 1, 21: 1}
    assert minus.buckets[23].mean_valence == pytest.approx(0.125)

    six = await time_of_day(graph, "ann", since=T0, until=T0 + 24 * H, bucket_hours=6)
    assert [(b.start_hour, b.count) for b in six.buckets] == [(0, 2), (6, 2), (12, 0), (18, 1)]
    assert six.to_dict()["buckets"][0]["start_hour"] == 0


async def test_resonance_partners_in_either_direction(graph: neo4j.AsyncDriver) -> None:
    partners = await resonance_partners(graph, "ann")
    assert [p.to_dict() for p in partners] == [
        {"user_id": "bob", "times": 2, "mean_score": pytest.approx(0.7), "last_at": 300.0, "rooms": ["r1"]},
        {"user_id": "cy", "times": 1, "mean_score": 0.4, "last_at": 200.0, "rooms": ["r2"]},
    ]
    assert [(p.user_id, p.times) for p in await resonance_partners(graph, "ann", since=150.0)] == [
        ("bob", 1),
        ("cy", 1),
    ]
    assert [p.user_id for p in await resonance_partners(graph, "cy")] == ["ann"]


async def test_replay_window_returns_wire_form_events_from_the_log() -> None:
    clock_ms = [1_000]
    log = MemoryEventLog(clock=lambda: clock_ms[0] / 1000)
    appended = []
    for i, item in enumerate(
        [
            state("ann", 1.0, 0.1, 0.1),
            events.presence_changed("r", 2.0, "ann", joined=True),
            state("bob", 3.0, 0.2, 0.2),
            state("ann", 4.0, 0.3, 0.3),
        ]
    ):
        clock_ms[0] = 1_000 + 10 * i
        await log.append(item)
        appended.append(item)

    assert await replay_window(log, 1_010, 1_030) == [e.to_dict() for e in appended[1:]]
    assert await replay_window(log, subject="ann") == [appended[0].to_dict(), appended[3].to_dict()]
    only_presence = await replay_window(log, types=[EventType.PRESENCE_CHANGED])
    assert only_presence == [appended[1].to_dict()]
    assert await replay_window(log, types=["state_changed"], subject="bob", limit=3) == [
        appended[2].to_dict()
    ]
    with pytest.raises(GraphQueryInputError, match="unknown event type"):
        await replay_window(log, types=["bogus"])
    with pytest.raises(GraphQueryInputError, match="subject"):
        await replay_window(log, subject="")
    with pytest.raises(GraphQueryInputError, match="limit"):
        await replay_window(log, limit=0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda d: timeline(d, ""), "user_id"),
        (lambda d: timeline(d, "ann", 10.0, 5.0), "after until"),
        (lambda d: timeline(d, "ann", float("nan")), "since"),
        (lambda d: timeline(d, "ann", limit=0), "limit"),
        (lambda d: state_as_of(d, "ann", None), "at must"),
        (lambda d: state_as_of(d, "ann", True), "at must"),
        (lambda d: transition_matrix(d, "ann", valence_split=2.0), "valence_split"),
        (lambda d: transition_matrix(d, "ann", arousal_split=-0.1), "arousal_split"),
        (lambda d: time_of_day(d, "ann", bucket_hours=5), "divide 24"),
        (lambda d: time_of_day(d, "ann", bucket_hours=True), "divide 24"),
        (lambda d: time_of_day(d, "ann", utc_offset_minutes=15 * 60), "14 hours"),
        (lambda d: time_of_day(d, "ann", utc_offset_minutes=1.5), "integer"),
        (lambda d: resonance_partners(d, "ann", 3.0, 1.0), "after until"),
    ],
)
async def test_bad_query_arguments_are_refused_before_any_io(call: Any, message: str) -> None:
    # No driver at all: the arguments are checked first.
    with pytest.raises(GraphQueryInputError, match=message):
        await call(None)
