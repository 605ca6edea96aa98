"""The Redis Stream log beyond the shared contract: foreign entries, a lost group, outages and stalls."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from resonance_worker.errors import EngineError, EngineTimeoutError
from resonance_worker.eventlog import EventLogError, EventLogTimeoutError
from resonance_worker.eventlog.redis import RedisEventLog

from tests.harness.redis import RedisServer
from tests.worker.eventlog.conftest import burst, state

pytestmark = pytest.mark.redis


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


async def test_entries_that_are_not_events_are_delivered_with_the_problem(
    redis_client: aioredis.Redis, redis_server: RedisServer
) -> None:
    log = RedisEventLog.from_url(redis_server.url, prefix="poison")
    try:
        await log.setup()
        await log.setup()  # idempotent
        good = state("ann", 1.0)
        await log.append(good)
        await redis_client.xadd("poison.events", {"e": b"{not json"})
        await redis_client.xadd("poison.events", {"other": b"x"})
        tampered = good.to_dict() | {"id": "0" * 32}
        await redis_client.xadd("poison.events", {"e": str(tampered).encode()})

        entries = await log.read_new("p", count=10)
        assert entries[0].event == good and entries[0].problem is None
        assert [e.event for e in entries[1:]] == [None, None, None]
        assert "not a valid event" in (entries[1].problem or "")
        assert entries[2].problem == "entry has no event field"
        # Replay skips what is not an event.
        assert await log.replay() == [good]
    finally:
        await log.close()


async def test_a_lost_group_is_created_again_from_the_start(redis_client: aioredis.Redis) -> None:
    log = RedisEventLog(redis_client, prefix="lost")
    assert (await log.lag()).to_dict() == {"pending": 0, "undelivered": 0}  # nothing yet
    await redis_client.xadd("lost.events", {"e": state("ann", 0.5).to_json().encode()})
    assert (await log.lag()).to_dict() == {"pending": 0, "undelivered": 1}  # stream, no group

    first = await log.read_new("p")  # NOGROUP → created at 0, so the earlier entry is delivered
    assert [e.event for e in first] == [state("ann", 0.5)]
    await redis_client.delete("lost.events")  # as after a Redis restart without persistence
    await log.append(state("ann", 1.0))
    entries = await log.read_new("p")
    assert [e.event for e in entries] == [state("ann", 1.0)]
    await redis_client.delete("lost.events")
    assert (await log.claim_stale("p", 0)).entries == []


async def test_a_stopped_redis_is_an_event_log_error(own_redis: RedisServer) -> None:
    log = RedisEventLog.from_url(own_redis.url, prefix="down", timeout=1.0)
    try:
        await log.append(state("ann", 1.0))
        own_redis.stop()
        with pytest.raises(EventLogError, match="append failed") as raised:
            await log.append(state("ann", 2.0))
        assert isinstance(raised.value, EngineError)
        with pytest.raises(EventLogError, match="read failed"):
            await log.read_new("p")
        with pytest.raises(EventLogError, match="lag failed"):
            await log.lag()
        own_redis.start()
        assert await log.length() == 0  # no persistence: the restarted Redis is empty
        await log.append(state("ann", 3.0))
        assert [e.event for e in await log.read_new("p")] == [state("ann", 3.0)]
    finally:
        await log.close()


async def test_a_stalled_redis_gives_timeouts_not_hangs(own_redis: RedisServer) -> None:
    log = RedisEventLog.from_url(own_redis.url, prefix="stall", timeout=0.3)
    try:
        await log.append_many(burst(3))
        own_redis.process.signal(signal.SIGSTOP)  # alive, answering nothing
        try:
            with pytest.raises(EventLogTimeoutError, match=r"append timed out after 0\.3 s") as raised:
                await log.append(state("ann", 9.0))
            assert isinstance(raised.value, EngineTimeoutError)
            # A blocking read gets its block time on top of the deadline.
            with pytest.raises(EventLogTimeoutError, match=r"read timed out after 0\.5 s"):
                await log.read_new("p", block_ms=200)
            with pytest.raises(EventLogTimeoutError):
                await log.replay()
        finally:
            own_redis.process.signal(signal.SIGCONT)
        # The append that timed out may or may not have been stored: that is what a timeout means.
        assert 3 <= await log.length() <= 4
    finally:
        await log.close()


async def test_append_many_is_one_atomic_script_call(redis_client: aioredis.Redis) -> None:
    log = RedisEventLog(redis_client, prefix="atomic")
    events = burst(50)
    ids = await log.append_many(events)
    raw = await redis_client.xrange("atomic.events")
    assert [entry_id.decode() for entry_id, _ in raw] == ids
    assert [fields[b"e"].decode() for _, fields in raw] == [e.to_json() for e in events]


def test_a_log_needs_a_positive_timeout(redis_server: RedisServer) -> None:
    with pytest.raises(ValueError, match="timeout"):
        RedisEventLog(aioredis.Redis.from_url(redis_server.url), timeout=0)


async def test_a_key_of_the_wrong_type_is_an_event_log_error(redis_client: aioredis.Redis) -> None:
    await redis_client.set("wrong.events", b"not a stream")
    log = RedisEventLog(redis_client, prefix="wrong")
    with pytest.raises(EventLogError, match="setup failed: WRONGTYPE"):
        await log.setup()
    with pytest.raises(EventLogError, match="read failed: WRONGTYPE"):
        await log.read_new("p")


async def test_lag_reads_its_own_group_among_others(redis_client: aioredis.Redis) -> None:
    log = RedisEventLog(redis_client, prefix="groups", group="projector")
    await log.append_many(burst(3))
    await redis_client.xgroup_create("groups.events", "analytics", id="$")
    await log.setup()
    await log.read_new("p", count=1)
    assert (await log.lag()).to_dict() == {"pending": 1, "undelivered": 2}


async def test_closing_a_log_leaves_a_borrowed_client_open(redis_client: aioredis.Redis) -> None:
    log = RedisEventLog(redis_client, prefix="borrowed")
    await log.close()
    assert await redis_client.ping()
