"""Event-log fixtures: every contract test runs on the memory log and on a Redis Stream
on the run's real redis-server, and on its real Redis Cluster (each Redis test gets its own key
prefix)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis
from resonance_worker.domain import events
from resonance_worker.domain.events import Event
from resonance_worker.eventlog import MemoryEventLog, Retention
from resonance_worker.eventlog.base import EventLog
from resonance_worker.eventlog.redis import RedisEventLog

from tests.harness.redis import RedisServer
from tests.harness.rediscluster import RedisClusterNodes

_prefixes = itertools.count()


class DrivenClock:
    """Wall time (seconds) that moves only when the test says so (the memory log's clock;
    the Redis log runs on Redis's clock)."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class LogSetup:
    kind: str
    log: EventLog
    clock: DrivenClock
    redis: aioredis.Redis | aioredis.RedisCluster | None = None

    def make(self, retention: Retention | None = None) -> EventLog:
        """Another log on the same store and key, with other retention."""
        if isinstance(self.log, RedisEventLog):
            assert self.redis is not None
            prefix = self.log.key.removesuffix(".events")
            return RedisEventLog(self.redis, prefix=prefix, retention=retention)  # type: ignore[arg-type]
        return MemoryEventLog(retention=retention, clock=self.clock)


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("cluster", marks=pytest.mark.redis),
    ]
)
async def setup(request: pytest.FixtureRequest) -> AsyncIterator[LogSetup]:
    clock = DrivenClock()
    if request.param == "memory":
        yield LogSetup("memory", MemoryEventLog(clock=clock), clock)
        return
    client: aioredis.Redis | aioredis.RedisCluster
    if request.param == "cluster":  # the worker's log in RESONANCE_REDIS_MODE=cluster: one stream, one shard
        cluster: RedisClusterNodes = request.getfixturevalue("redis_cluster")
        client = cluster.async_client()
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        client = aioredis.Redis.from_url(server.url)
    log = RedisEventLog(client, prefix=f"el{next(_prefixes)}")  # type: ignore[arg-type]
    await log.setup()
    try:
        yield LogSetup(request.param, log, clock, client)
    finally:
        await client.aclose()


def state(
    person: str, at: float, valence: float = 0.1, arousal: float = 0.5, seq: int | None = None
) -> Event:
    return events.state_changed(
        person, at, {"valence": valence, "arousal": arousal, "source": "self_report", "at": at}, seq=seq
    )


def burst(count: int, person: str = "ann", start: float = 1_000.0) -> list[Event]:
    return [state(person, start + i, valence=((i % 21) - 10) / 10, seq=i) for i in range(count)]
