"""The event-log contract, on the memory log and on a real Redis Stream."""

from __future__ import annotations

import asyncio

import pytest
from resonance_worker.domain.events import Event
from resonance_worker.eventlog import EventLogInputError, Retention
from resonance_worker.eventlog.base import parse_log_id

from tests.worker.eventlog.conftest import LogSetup, burst, state


def ms_of(log_id: str) -> int:
    return parse_log_id(log_id)[0]


async def test_appended_events_replay_in_log_order_with_increasing_ids(setup: LogSetup) -> None:
    first = state("ann", 10.0)
    ids = [await setup.log.append(first)]
    rest = burst(5, start=20.0)
    ids += await setup.log.append_many(rest)

    assert [parse_log_id(i) for i in ids] == sorted(parse_log_id(i) for i in ids)
    assert len(set(ids)) == 6
    assert await setup.log.replay() == [first, *rest]
    assert await setup.log.length() == 6
    assert await setup.log.append_many([]) == []


async def test_each_entry_is_delivered_once_and_stays_pending_until_acknowledged(setup: LogSetup) -> None:
    appended = burst(5)
    ids = await setup.log.append_many(appended)

    first = await setup.log.read_new("p1", count=3)
    second = await setup.log.read_new("p2", count=10)
    assert [e.log_id for e in first + second] == ids
    assert [e.event for e in first + second] == appended
    assert all(e.problem is None for e in first + second)
    assert await setup.log.read_new("p1") == []
    assert (await setup.log.lag()).to_dict() == {"pending": 5, "undelivered": 0}

    assert await setup.log.ack(ids[:3]) == 3
    assert await setup.log.ack(ids[:3]) == 0  # already acknowledged
    assert (await setup.log.lag()).pending == 2
    assert await setup.log.ack([]) == 0


async def test_lag_counts_entries_never_delivered(setup: LogSetup) -> None:
    await setup.log.append_many(burst(4))
    assert (await setup.log.lag()).to_dict() == {"pending": 0, "undelivered": 4}
    await setup.log.read_new("p", count=1)
    assert (await setup.log.lag()).to_dict() == {"pending": 1, "undelivered": 3}


async def test_a_stale_consumers_entries_are_claimed_by_another(setup: LogSetup) -> None:
    ids = await setup.log.append_many(burst(4))
    taken = await setup.log.read_new("crashed", count=4)
    assert len(taken) == 4

    # Not idle long enough yet: nothing to claim.
    nothing = await setup.log.claim_stale("rescuer", min_idle_ms=3_600_000)
    assert nothing.entries == [] and nothing.trimmed == []

    setup.clock.now += 1.0
    await asyncio.sleep(0.01)  # Redis measures idleness on its own clock
    claimed = await setup.log.claim_stale("rescuer", min_idle_ms=5, count=3)
    assert [e.log_id for e in claimed.entries] == ids[:3]
    assert [e.event for e in claimed.entries] == [e.event for e in taken[:3]]
    rest = await setup.log.claim_stale("rescuer", min_idle_ms=0)
    assert [e.log_id for e in rest.entries] == ids  # the rescuer's own are idle ≥ 0 too

    assert await setup.log.ack(ids) == 4
    assert (await setup.log.lag()).pending == 0
    assert (await setup.log.claim_stale("rescuer", min_idle_ms=0)).entries == []


async def test_a_blocking_read_returns_when_an_event_arrives(setup: LogSetup) -> None:
    event = state("ann", 1.0)

    async def append_soon() -> None:
        await asyncio.sleep(0.05)
        await setup.log.append(event)

    appender = asyncio.create_task(append_soon())
    entries = await setup.log.read_new("p", count=10, block_ms=5_000)
    await appender
    assert [e.event for e in entries] == [event]


async def test_a_blocking_read_on_a_quiet_log_returns_nothing(setup: LogSetup) -> None:
    assert await setup.log.read_new("p", count=10, block_ms=20) == []


async def test_replay_selects_a_window_of_append_time(setup: LogSetup) -> None:
    appended = []
    for i in range(6):
        if setup.kind != "memory":
            await asyncio.sleep(0.003)  # Redis stamps ids with its own clock; separate the milliseconds
        setup.clock.now += 1.0
        event = state("ann", float(i))
        appended.append((await setup.log.append(event), event))
    millis = [ms_of(log_id) for log_id, _ in appended]

    window = await setup.log.replay(millis[1], millis[3])
    assert window == [event for _, event in appended[1:4]]
    assert await setup.log.replay(since_ms=millis[4]) == [e for _, e in appended[4:]]
    assert await setup.log.replay(until_ms=millis[0]) == [appended[0][1]]
    assert await setup.log.replay(limit=2) == [e for _, e in appended[:2]]
    assert await setup.log.replay(millis[-1] + 10_000) == []


async def test_retention_by_length_keeps_about_the_newest(setup: LogSetup) -> None:
    log = setup.make(Retention(max_len=10))
    appended = burst(1000)
    for start in range(0, 1000, 100):
        await log.append_many(appended[start : start + 100])
    await log.append(state("ann", 5_000.0))
    kept = await log.replay(limit=10_000)
    if setup.kind == "memory":
        assert len(kept) == 10  # exact
    else:
        assert 10 <= len(kept) < 1001  # Redis trims whole radix-tree nodes (MAXLEN ~)
    assert kept[-1] == state("ann", 5_000.0)
    assert kept == [*appended, state("ann", 5_000.0)][-len(kept) :]


async def test_retention_by_age_drops_old_entries(setup: LogSetup) -> None:
    log = setup.make(Retention(max_age_ms=50))
    for start in range(0, 1000, 100):
        await log.append_many(burst(100, start=float(start)))
    setup.clock.now += 1.0
    await asyncio.sleep(0.1)  # the Redis log trims by Redis's own clock
    latest = state("bob", 1.0)
    await log.append(latest)
    kept = await log.replay(limit=10_000)
    if setup.kind == "memory":
        assert kept == [latest]  # exact
    else:
        assert kept[-1] == latest and len(kept) < 1001  # MINID ~ trims whole radix-tree nodes


async def test_entries_trimmed_while_pending_are_reported_by_claims(setup: LogSetup) -> None:
    log = setup.make(Retention(max_len=100))
    await log.append_many(burst(300))
    taken = await log.read_new("crashed", count=300)
    assert len(taken) <= 300
    for start in range(0, 1000, 100):
        await log.append_many(burst(100, person="bob", start=float(start)))
    setup.clock.now += 1.0
    await asyncio.sleep(0.01)

    claimed, trimmed = [], []
    while True:
        result = await log.claim_stale("rescuer", min_idle_ms=0, count=100)
        claimed += [e.log_id for e in result.entries]
        trimmed += result.trimmed
        await log.ack([e.log_id for e in result.entries])
        if not result.entries and not result.trimmed:
            break
    assert trimmed, "the old pending entries were trimmed away"
    assert sorted(claimed + trimmed, key=parse_log_id) == [e.log_id for e in taken]
    assert (await log.lag()).pending == 0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda log: log.append("not an event"), "only Event records"),
        (lambda log: log.append_many([object()]), "only Event records"),
        (lambda log: log.read_new("", 10), "consumer"),
        (lambda log: log.read_new("p", 0), "count"),
        (lambda log: log.read_new("p", 10_001), "count"),
        (lambda log: log.read_new("p", True), "count"),
        (lambda log: log.read_new("p", 1, -1), "block_ms"),
        (lambda log: log.read_new("p", 1, 600_000), "at most"),
        (lambda log: log.ack(["1-x"]), "not a log id"),
        (lambda log: log.ack("1-0"), "sequence"),
        (lambda log: log.ack([7]), "not a log id"),
        (lambda log: log.claim_stale("p", -5), "min_idle_ms"),
        (lambda log: log.replay(10, 5), "after until_ms"),
        (lambda log: log.replay(1.5, None), "since_ms"),
        (lambda log: log.replay(limit=0), "limit"),
    ],
)
async def test_bad_input_is_refused_clearly(setup: LogSetup, call: object, message: str) -> None:
    with pytest.raises(EventLogInputError, match=message):
        await call(setup.log)  # type: ignore[operator]


async def test_log_ids_may_be_given_as_bytes(setup: LogSetup) -> None:
    (log_id,) = await setup.log.append_many([state("ann", 1.0)])
    await setup.log.read_new("p")
    assert await setup.log.ack([log_id.encode()]) == 1  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_len": 10, "max_age_ms": 10}, "not both"),
        ({"max_len": 0}, "max_len"),
        ({"max_len": True}, "max_len"),
        ({"max_age_ms": -1}, "max_age_ms"),
    ],
)
def test_impossible_retention_is_refused(options: dict[str, int], message: str) -> None:
    with pytest.raises(EventLogInputError, match=message):
        Retention(**options)


def test_an_event_round_trips_through_the_wire_form() -> None:
    event = state("ann", 1.0)
    assert Event.from_json(event.to_json()) == event


TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_a_trace_context_travels_beside_its_events_to_readers_and_claimers(setup: LogSetup) -> None:
    traced = burst(2)
    untraced = state("bo", 50.0)
    await setup.log.append_many(traced, trace=TRACEPARENT)
    await setup.log.append(untraced)

    read = await setup.log.read_new("p1", count=10)
    assert [(e.event, e.trace) for e in read] == [
        (traced[0], TRACEPARENT),
        (traced[1], TRACEPARENT),
        (untraced, None),
    ]
    claimed = (await setup.log.claim_stale("p2", min_idle_ms=0, count=10)).entries
    assert [e.trace for e in claimed] == [TRACEPARENT, TRACEPARENT, None]
    assert await setup.log.replay() == [*traced, untraced]  # the event itself is untouched (same id)
    with pytest.raises(EventLogInputError, match="traceparent"):
        await setup.log.append(untraced, trace="x" * 200)
    with pytest.raises(EventLogInputError, match="traceparent"):
        await setup.log.append(untraced, trace="00-\n")
