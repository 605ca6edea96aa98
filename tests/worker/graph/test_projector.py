"""The projector on a real Neo4j: the graph it builds, idempotence, out-of-order chains, poison, races."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import neo4j
import pytest
import redis.asyncio as aioredis
from resonance_worker.domain import events
from resonance_worker.domain.events import Event, EventType
from resonance_worker.eventlog import MemoryEventLog, Retention
from resonance_worker.eventlog.redis import RedisEventLog
from resonance_worker.graph import Projector, ProjectorConfig, ensure_schema, plan

from tests.worker.graph.conftest import FAST, chain, project, projector, rows, snapshot, state, until

pytestmark = pytest.mark.neo4j


def story() -> list[Event]:
    """Ann and Bob in room r: states, presence, a resonance result, a pattern, a question, the thyroid."""
    return [
        events.presence_changed("r", 90.0, "ann", joined=True, client_id="c-ann"),
        events.presence_changed("r", 95.0, "bob", joined=True),
        state("ann", 100.0, 0.5, 0.75, label="excited", session="s1"),
        state("bob", 150.0, -0.25, 0.25, session="s9"),
        state("ann", 200.0, 0.25, 0.5, session="s1"),
        events.resonance_computed(
            "r",
            250.0,
            {
                "room_id": "r",
                "at": 250.0,
                "score": 0.8,
                "agreement": 0.9,
                "synchrony": 0.65,
                "members": 2,
                "synced_pairs": 1,
                "member_ids": ["bob", "ann"],
            },
        ),
        events.pattern_detected("r", 260.0, {"kind": "convergence", "strength": 0.4, "evidence": {"n": 3}}),
        state("ann", 300.0, -0.5, 0.25, session="s2"),
        events.question_asked("ann", 310.0, {"key": "hr_vs_calm", "text": "What was happening then?"}),
        events.presence_changed("r", 400.0, "ann", joined=False, client_id="c-ann"),
        events.thyroid_released(
            "w1",
            500.0,
            {
                "state": "stressed",
                "pain": 12.5,
                "threshold": 10.0,
                "top_source": "neo4j_failure",
                "trend": "rising",
                "suggested_action": "check Neo4j",
                "summary": "neo4j hurts",
            },
        ),
        events.thyroid_relaxed("w1", 600.0, state="calm", previous="stressed", pain=2.0),
    ]


async def test_projection_builds_the_expected_graph(neo4j_driver: neo4j.AsyncDriver) -> None:
    worker = await project(neo4j_driver, story())
    assert worker.stats.projected == 12 and worker.stats.duplicates == 0 and worker.stats.poison == 0

    assert await chain(neo4j_driver, "ann") == [100.0, 200.0, 300.0]
    assert await chain(neo4j_driver, "bob") == [150.0]
    first = await rows(
        neo4j_driver,
        "MATCH (s:State {user_id: 'ann', at: 100.0})-[:IN_SESSION]->(x:Session) "
        "RETURN s.valence AS v, s.arousal AS a, s.label AS label, s.source AS source, x.id AS session",
    )
    assert first == [{"v": 0.5, "a": 0.75, "label": "excited", "source": "self_report", "session": "s1"}]
    sessions = await rows(
        neo4j_driver, "MATCH (:User {id: 'ann'})-[:HAD_SESSION]->(x) RETURN x.id AS id ORDER BY id"
    )
    assert [row["id"] for row in sessions] == ["c-ann", "s1", "s2"]
    presence = await rows(
        neo4j_driver,
        "MATCH (u:User)-[p:JOINED|LEFT]->(:Room {id: 'r'}) "
        "RETURN u.id AS who, type(p) AS what, p.at AS at, p.client_id AS client ORDER BY at",
    )
    assert presence == [
        {"who": "ann", "what": "JOINED", "at": 90.0, "client": "c-ann"},
        {"who": "bob", "what": "JOINED", "at": 95.0, "client": None},
        {"who": "ann", "what": "LEFT", "at": 400.0, "client": "c-ann"},
    ]
    resonance = await rows(
        neo4j_driver,
        "MATCH (x:Resonance)-[:IN]->(:Room {id: 'r'}) MATCH (m:User)-[:PARTICIPATED_IN]->(x) "
        "RETURN x.score AS score, x.at AS at, x.members AS members, collect(m.id) AS who",
    )
    assert len(resonance) == 1
    assert resonance[0] | {"who": sorted(resonance[0]["who"])} == {
        "score": 0.8,
        "at": 250.0,
        "members": 2,
        "who": ["ann", "bob"],
    }
    resonated = await rows(
        neo4j_driver,
        "MATCH (a:User)-[r:RESONATED_WITH]->(b:User) RETURN a.id AS a, b.id AS b, r.at AS at, r.score AS s",
    )
    assert resonated == [{"a": "ann", "b": "bob", "at": 250.0, "s": 0.8}]
    others = await rows(
        neo4j_driver,
        "MATCH (p:Pattern)-[:IN]->(:Room {id: 'r'}) MATCH (:User {id: 'ann'})-[:WAS_ASKED]->(q:Question) "
        "MATCH (t:ThyroidRelease)-[:ON]->(w:Worker {id: 'w1'}) MATCH (x:ThyroidRelaxation)-[:ON]->(w) "
        "RETURN p.kind AS kind, p.evidence AS evidence, q.text AS text, t.pain AS pain, "
        "t.top_source AS source, x.state AS relaxed_to",
    )
    assert others == [
        {
            "kind": "convergence",
            "evidence": '{"n":3}',
            "text": "What was happening then?",
            "pain": 12.5,
            "source": "neo4j_failure",
            "relaxed_to": "calm",
        },
    ]
    applied = await rows(neo4j_driver, "MATCH (e:Event) RETURN e.type AS type, e.id AS id")
    assert sorted(row["id"] for row in applied) == sorted(e.id for e in story())
    assert {row["type"] for row in applied} == {t.value for t in EventType}


async def test_replaying_the_same_events_changes_nothing(neo4j_driver: neo4j.AsyncDriver) -> None:
    log = MemoryEventLog()
    first = await project(neo4j_driver, story(), log)
    before = await snapshot(neo4j_driver)

    again = await project(
        neo4j_driver, story(), log
    )  # same events appended again: new log ids, same event ids
    assert again.stats.projected == 0 and again.stats.duplicates == 12
    assert await snapshot(neo4j_driver) == before
    # A whole fresh log replayed (as after losing Redis and re-sending): still nothing new.
    fresh = await project(neo4j_driver, list(reversed(story())))
    assert fresh.stats.duplicates == 12 and await snapshot(neo4j_driver) == before
    assert first.stats.batches == 1


async def test_schema_creation_is_idempotent(neo4j_driver: neo4j.AsyncDriver) -> None:
    await ensure_schema(neo4j_driver)
    await ensure_schema(neo4j_driver)
    constraints = await rows(
        neo4j_driver, "SHOW CONSTRAINTS YIELD name WHERE name STARTS WITH 'resonance_' RETURN name"
    )
    assert {"resonance_event_id", "resonance_user_id", "resonance_state_id"} <= {
        r["name"] for r in constraints
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_states_arriving_out_of_order_end_in_a_chain_by_time(
    neo4j_driver: neo4j.AsyncDriver, seed: int
) -> None:
    person = f"ann-{seed}"
    times = [10.0, 20.0, 20.0, 30.0, 5.0, 40.0, 40.0, 40.0, 15.0, 100.0, 1.0, 55.0]
    items = [state(person, t, valence=(i % 5) / 5, arousal=0.5) for i, t in enumerate(times)]
    random.Random(seed).shuffle(items)
    log = MemoryEventLog()
    small_batches = ProjectorConfig(batch_size=3, block_ms=0)  # inserts within and across transactions
    for item in items:  # arrival order = the shuffled order
        await log.append(item)
    await projector(log, neo4j_driver, small_batches).drain()

    assert await chain(neo4j_driver, person) == sorted(times)
    ties = await rows(
        neo4j_driver,
        "MATCH (a:State {user_id: $p})-[:NEXT]->(b) WHERE a.at = b.at RETURN a.id < b.id AS ordered",
        p=person,
    )
    assert ties and all(row["ordered"] for row in ties)  # equal times ordered by event id


async def test_an_old_state_arriving_last_does_not_move_latest(neo4j_driver: neo4j.AsyncDriver) -> None:
    log = MemoryEventLog()
    await project(neo4j_driver, [state("ann", 10.0, 0.1, 0.1), state("ann", 30.0, 0.3, 0.3)], log)
    await project(neo4j_driver, [state("ann", 20.0, 0.2, 0.2)], log)
    assert await chain(neo4j_driver, "ann") == [10.0, 20.0, 30.0]


async def test_unprojectable_entries_are_acknowledged_and_counted(neo4j_driver: neo4j.AsyncDriver) -> None:
    bad = Event.create(EventType.STATE_CHANGED, "ann", 5.0, {"state": {"valence": 7, "arousal": 0.5}})
    log = MemoryEventLog()
    worker = await project(neo4j_driver, [state("ann", 1.0, 0.1, 0.1), bad, state("ann", 9.0, 0.2, 0.2)], log)
    assert worker.stats.poison == 1 and worker.stats.projected == 2
    assert "cannot be projected" in worker.stats.recent_problems[0]
    assert (await log.lag()).pending == 0
    assert await chain(neo4j_driver, "ann") == [1.0, 9.0]


@pytest.mark.redis
async def test_two_projectors_on_one_group_keep_every_chain_correct(
    neo4j_driver: neo4j.AsyncDriver, redis_client: aioredis.Redis
) -> None:
    log = RedisEventLog(redis_client, prefix="race")
    rng = random.Random(7)
    items = [state(person, float(t), 0.0, 0.5) for person in ("ann", "bob") for t in range(60)]
    rng.shuffle(items)
    await log.append_many(items)
    config = ProjectorConfig(batch_size=5, block_ms=20, transaction_timeout_s=10.0, backoff_base_s=0.05)
    one, two = projector(log, neo4j_driver, config), projector(log, neo4j_driver, config)

    # The run loops, not drain(): a deadlock between the two is retried, as in production.
    tasks = [asyncio.create_task(one.run()), asyncio.create_task(two.run())]

    def all_settled() -> bool:
        return sum(p.stats.projected + p.stats.duplicates for p in (one, two)) >= 120

    await until(all_settled, within_s=120, what="all 120 events settled")
    one.stop()
    two.stop()
    await asyncio.gather(*tasks)

    assert one.stats.projected > 0 and two.stats.projected > 0
    assert one.stats.projected + two.stats.projected == 120  # each event applied exactly once
    assert await chain(neo4j_driver, "ann") == [float(t) for t in range(60)]
    assert await chain(neo4j_driver, "bob") == [float(t) for t in range(60)]
    assert (await one.lag()).to_dict() == {"pending": 0, "undelivered": 0}


async def test_the_run_loop_projects_until_stopped(neo4j_driver: neo4j.AsyncDriver) -> None:
    log = MemoryEventLog()
    worker = projector(log, neo4j_driver, FAST)
    task = asyncio.create_task(worker.run())
    await log.append_many([state("ann", float(t), 0.0, 0.5) for t in range(10)])
    await until(lambda: worker.stats.projected >= 10, what="10 events projected")
    worker.stop()
    await asyncio.wait_for(task, 10)
    assert await chain(neo4j_driver, "ann") == [float(t) for t in range(10)]
    assert worker.stats.to_dict()["projected"] == 10


def test_impossible_projector_settings_are_refused() -> None:
    for options in (
        {"batch_size": 0},
        {"block_ms": -1},
        {"claim_interval_s": 0},
        {"backoff_base_s": 1.0, "backoff_max_s": 0.5},
    ):
        with pytest.raises(ValueError, match=r"must|cannot"):
            ProjectorConfig(**options)  # type: ignore[arg-type]


@pytest.mark.redis
async def test_foreign_entries_in_the_stream_are_dropped_as_poison(
    neo4j_driver: neo4j.AsyncDriver, redis_client: aioredis.Redis
) -> None:
    log = RedisEventLog(redis_client, prefix="foreign")
    await log.append(state("ann", 1.0, 0.1, 0.1))
    await redis_client.xadd("foreign.events", {"e": b"garbage"})
    worker = await project(neo4j_driver, [state("ann", 2.0, 0.2, 0.2)], log)
    assert (worker.stats.poison, worker.stats.projected) == (1, 2)
    assert "not a valid event" in worker.stats.recent_problems[0]
    assert (await log.lag()).pending == 0


async def test_entries_trimmed_before_projection_are_counted_as_lost(neo4j_driver: neo4j.AsyncDriver) -> None:
    log = MemoryEventLog(retention=Retention(max_len=5))
    await log.append_many([state("ann", float(t), 0.0, 0.5) for t in range(5)])
    await log.read_new("crashed", count=5)  # taken, never acknowledged
    await log.append_many([state("ann", float(t), 0.0, 0.5) for t in range(5, 10)])  # trims the first five
    worker = projector(log, neo4j_driver, ProjectorConfig(block_ms=0, claim_idle_ms=0))
    await worker.drain()
    assert worker.stats.trimmed == 5 and worker.stats.projected == 5
    assert await chain(neo4j_driver, "ann") == [float(t) for t in range(5, 10)]


async def test_drain_gives_up_after_its_rounds(neo4j_driver: neo4j.AsyncDriver) -> None:
    log = MemoryEventLog()
    await log.append_many([state("ann", float(t), 0.0, 0.5) for t in range(4)])
    worker = projector(log, neo4j_driver, ProjectorConfig(batch_size=1, block_ms=0))
    with pytest.raises(RuntimeError, match="did not drain within 2 rounds"):
        await worker.drain(max_rounds=2)


async def test_an_unexpected_error_is_logged_and_retried_not_fatal(
    neo4j_driver: neo4j.AsyncDriver, caplog: pytest.LogCaptureFixture
) -> None:
    log = MemoryEventLog()
    await log.append(state("ann", 1.0, 0.0, 0.5))
    broken = Projector(log, neo4j_driver, consumer="", config=FAST)  # the log refuses an empty consumer name
    task = asyncio.create_task(broken.run())
    await until(lambda: broken.stats.failures >= 2, what="two failed rounds")
    broken.stop()
    await asyncio.wait_for(task, 10)
    assert "consumer must be a non-empty string" in (broken.stats.last_error or "")
    assert "projector step failed unexpectedly" in caplog.text
    assert (await log.lag()).undelivered == 1  # nothing consumed, nothing lost


def _db_hits(operator: dict[str, Any]) -> int:
    return int(operator.get("dbHits", 0)) + sum(_db_hits(child) for child in operator.get("children", []))


async def test_inserting_into_a_long_chain_seeks_instead_of_scanning(neo4j_driver: neo4j.AsyncDriver) -> None:
    """The work of one insert (database hits, from PROFILE) does not grow with the person's history."""
    hits = {}
    for person, length in (("short", 20), ("long", 400)):
        await project(neo4j_driver, [state(person, float(t), 0.0, 0.5) for t in range(length)])
        late = plan(state(person, length / 2 + 0.5, 0.1, 0.5))  # lands in the middle of the chain
        async with neo4j_driver.session() as session:
            result = await session.run("PROFILE " + late.statement, late.parameters)
            summary = await result.consume()
        assert summary.profile is not None
        hits[person] = _db_hits(summary.profile)
        assert len(await chain(neo4j_driver, person)) == length + 1
    assert hits["long"] <= hits["short"] + 10, hits
