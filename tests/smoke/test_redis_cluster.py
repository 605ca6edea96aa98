"""The harness's Redis Cluster is real: six nodes made by ``redis-cli --cluster create``, keys placed by
hash tag, sharded pub/sub through redis-py's async ``ClusterPubSub``, and a primary's SIGKILL taken over
by its replica."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ClusterDownError
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.harness.rediscluster import RedisClusterNodes

pytestmark = pytest.mark.redis


async def test_cluster_hash_tags_sharded_pubsub_and_failover(tmp_path: Path) -> None:
    cluster = await asyncio.to_thread(RedisClusterNodes(tmp_path / "cluster").start)
    client = aioredis.RedisCluster(host=cluster.nodes[0].host, port=cluster.nodes[0].port)
    pubsub = client.pubsub()
    try:
        assert len(cluster.primaries()) == 3
        info = await client.info("server", target_nodes=aioredis.RedisCluster.RANDOM)
        assert tuple(int(p) for p in str(info["redis_version"]).split(".")[:2]) >= (7, 0)  # SPUBLISH

        # One hash tag, one slot: a channel's stream and its metadata can go in one script call.
        keys = ["{ch:room-1}.stream", "{ch:room-1}.meta", "{ch:room-1}.presence"]
        slots = {await client.cluster_keyslot(k) for k in keys}
        assert len(slots) == 1
        await client.xadd(keys[0], {"d": "1"})
        lua = "return redis.call('XLEN', KEYS[1]) + redis.call('HSET', KEYS[2], 'e', 'x')"
        script = client.register_script(lua)
        assert await script(keys=keys[:2]) == 2

        # Channels spread over the three primaries; SPUBLISH reaches the SSUBSCRIBE-r of its shard only.
        channels = [f"{{ch:room-{i}}}" for i in range(12)]
        assert len({cluster.primary_for(c).port for c in channels}) == 3
        await pubsub.ssubscribe(*channels)
        for channel in channels:
            assert await client.spublish(channel, f"to {channel}") == 1
        received: dict[str, bytes] = {}
        for _ in range(200):
            message = await pubsub.get_sharded_message(ignore_subscribe_messages=True, timeout=0.05)
            if message is not None:
                received[message["channel"].decode()] = message["data"]
            if len(received) == len(channels):
                break
        assert received == {c: f"to {c}".encode() for c in channels}

        # A primary killed: its replica takes the slots over; what a replica confirmed survives.
        await client.set("{ch:room-1}.kept", "yes")
        owner = client.get_node_from_key("{ch:room-1}")
        assert await client.execute_command("WAIT", 1, 1000, target_nodes=owner) >= 1
        killed = await asyncio.to_thread(cluster.kill_primary, "{ch:room-1}")
        await asyncio.to_thread(cluster.wait_for_failover, killed)
        assert cluster.primary_for("{ch:room-1}").port != killed.port
        for _ in range(30):
            try:
                assert await client.get("{ch:room-1}.kept") == b"yes"
                break
            except (RedisConnectionError, ClusterDownError):
                await asyncio.sleep(0.2)
        else:
            pytest.fail("the Cluster client never reached the promoted replica")
    finally:
        await pubsub.aclose()
        await client.aclose()
        cluster.stop()


async def test_a_one_shard_cluster_for_baselines(tmp_path: Path) -> None:
    """Fewer than three primaries (``redis-cli --cluster create`` refuses them) are joined by hand."""
    cluster = await asyncio.to_thread(
        RedisClusterNodes(tmp_path / "one", primaries=1, replicas_per_primary=1).start
    )
    client = aioredis.RedisCluster(host=cluster.nodes[0].host, port=cluster.nodes[0].port)
    try:
        await client.initialize()
        (primary,) = cluster.primaries()
        assert cluster.slot_owners()[primary.address] == [(0, 16383)]
        assert cluster.primary_for("{ch:a}") is primary and cluster.primary_for("{ch:b}") is primary
        assert await client.spublish("{ch:a}", "nobody listens") == 0
        await client.set("{ch:a}.k", "v")
        replica = next(n for n in cluster.nodes if n is not primary)
        assert cluster.client(replica).info("replication")["role"] == "slave"
    finally:
        await client.aclose()
        cluster.stop()
