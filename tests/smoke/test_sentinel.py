"""The harness's Sentinel deployment is real: redis-py finds the primary through three Sentinels, a
SIGKILL-ed primary is replaced by a replica, and a restarted node rejoins as a replica."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError

from tests.harness.sentinel import SentinelRedis

pytestmark = pytest.mark.redis


async def test_failover_through_sentinel_keeps_what_a_replica_confirmed(tmp_path: Path) -> None:
    deployment = await asyncio.to_thread(SentinelRedis(tmp_path / "sentinel", password="s3cret-pw").start)
    sentinel = Sentinel(deployment.sentinel_addresses, socket_timeout=1.0, password="s3cret-pw")
    primary = sentinel.master_for(deployment.service, socket_timeout=1.0)
    try:
        first = deployment.primary_address()
        assert await sentinel.discover_master(deployment.service) == first
        assert len(await sentinel.discover_slaves(deployment.service)) == 2
        await primary.set("kept", "yes")
        assert await primary.wait(1, 1000) >= 1  # on at least one replica before the crash

        killed = await asyncio.to_thread(deployment.kill_primary)
        assert killed.address == first
        second = await asyncio.to_thread(deployment.wait_for_failover, first)
        assert second != first

        # The same client object follows the failover: its connection to the dead node fails once, then
        # a new connection asks the Sentinels again.
        for _ in range(20):
            try:
                assert await primary.get("kept") == b"yes"
                await primary.set("after", "failover")
                break
            except (RedisConnectionError, ReadOnlyError):
                await asyncio.sleep(0.2)
        else:
            pytest.fail("the Sentinel-managed client never reached the new primary")
        assert primary.connection_pool.master_address == second

        await asyncio.to_thread(deployment.restart, killed)
        assert deployment.role(killed) == "slave"
        direct = aioredis.Redis(host=killed.host, port=killed.port, password="s3cret-pw")
        try:
            await primary.wait(2, 2000)
            assert await direct.get("after") == b"failover"
            with pytest.raises(ReadOnlyError):
                await direct.set("on-a-replica", "refused")
        finally:
            await direct.aclose()
    finally:
        await primary.aclose()
        await sentinel.aclose()
        deployment.stop()
