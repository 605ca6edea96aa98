"""What only the Redis engine's Cluster mode does, on a real six-node Redis Cluster: every key of a channel
on one slot (so each script touches one shard), sharded pub/sub on that slot, channels spread over the
shards, and subscriptions that follow a failover. The engine contract itself runs on the Cluster too
(``setup``'s ``cluster`` parameter in conftest.py)."""

from __future__ import annotations

import asyncio
import itertools
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from resonance_worker.domain.keys import channel_part
from resonance_worker.engines.base import ClientInfo, HistoryOptions
from resonance_worker.engines.redis import RedisEngine
from resonance_worker.errors import EngineError
from resonance_worker.settings import Durability

from tests.harness.rediscluster import RedisClusterNodes
from tests.worker.engines.conftest import Node, Recorder, cluster_connector, unique_prefix

pytestmark = pytest.mark.redis

KEEP = HistoryOptions(size=100, ttl_seconds=60)
ALICE = ClientInfo(user="alice", client="c1")


@pytest.fixture
async def admin(redis_cluster: RedisClusterNodes) -> AsyncIterator[aioredis.RedisCluster]:
    client = redis_cluster.async_client()
    try:
        yield client
    finally:
        await client.aclose()


async def test_a_channels_keys_and_shard_channel_share_its_slot_and_channels_spread_over_shards(
    redis_cluster: RedisClusterNodes, admin: aioredis.RedisCluster
) -> None:
    prefix = unique_prefix()
    engine = RedisEngine(cluster_connector(redis_cluster), prefix=prefix)
    await engine.start(Recorder())
    channels = [f"chat:room-{n}" for n in range(9)] + ["odd:{brace}}name"]
    try:
        for channel in channels:
            await engine.subscribe(channel)
            await engine.publish(channel, b"x", history=KEEP, idempotency_key="once")
            await engine.add_presence(channel, ALICE, ttl_seconds=30)
        owners = set()
        for channel in channels:
            part = channel_part(channel)
            names = [f"{prefix}.{kind}.{part}" for kind in ("stream", "meta")]
            names += [f"{prefix}.presence.{kind}.{part}" for kind in ("data", "users", "expire")]
            names.append(f"{prefix}.idem.{part}:once")
            assert all([await admin.exists(name) for name in names]), channel
            slots = {await admin.cluster_keyslot(name) for name in names}
            shard_channel = f"{prefix}.ch.{part}"
            assert slots == {await admin.cluster_keyslot(shard_channel)}, channel
            # Subscribed with SSUBSCRIBE on the primary that owns the slot (and no plain SUBSCRIBE).
            owner = admin.get_node_from_key(shard_channel)
            owners.add(owner.name)
            numsub = await admin.execute_command("PUBSUB SHARDNUMSUB", shard_channel, target_nodes=owner)
            assert numsub == [(shard_channel.encode(), 1)], channel
            numsub = await admin.execute_command("PUBSUB NUMSUB", shard_channel, target_nodes=owner)
            assert numsub == [(shard_channel.encode(), 0)], channel
        assert len(owners) == 3  # nine channels, three shards: each serves some
        # One pub/sub connection per primary (each holding its anchor channel), whatever the channel count.
        assert engine._shards is not None and engine._shards.live == 3
    finally:
        await engine.close()
        await engine.connector.aclose()


async def test_subscriptions_follow_a_failover_of_their_shard(tmp_path: Path) -> None:
    """A channel's primary is killed: its replica takes the slot over; the subscribing engine reconnects
    to the new slot map, says fan-out resumed (positioned subscriptions then look for gaps), and receives
    what is published afterwards; the history a replica had is still there."""
    cluster = await asyncio.to_thread(RedisClusterNodes(tmp_path / "cluster").start)
    prefix = unique_prefix()
    events = Recorder()
    subscriber = RedisEngine(
        cluster_connector(cluster),
        prefix=prefix,
        timeout=1.0,
        reconnect_min_delay=0.05,
        reconnect_max_delay=0.5,
    )
    publisher = RedisEngine(cluster_connector(cluster), prefix=prefix, timeout=1.0, failover_retry_seconds=20)
    await subscriber.start(events)
    await publisher.start()
    try:
        await subscriber.subscribe("chat:failover")
        first = await publisher.publish("chat:failover", b"1", history=KEEP)
        await events.wait_for(lambda: len(events.of("publication", "chat:failover")) == 1)
        shard_key = f"{prefix}.stream.{channel_part('chat:failover')}"
        owner = cluster.primary_for(shard_key)
        assert cluster.client(owner).wait(1, 2000) >= 1  # the replica has the publication
        killed = await asyncio.to_thread(cluster.kill_primary, shard_key)
        # Issued together (one auto-pipeline batch): the dead shard's publish fails, the healthy
        # shard's is stored and acknowledged - never failed because another shard is down.
        healthy = next(
            c for c in (f"chat:other-{n}" for n in range(50))
            if cluster.primary_for(f"{prefix}.stream.{channel_part(c)}").port != killed.port
        )  # fmt: skip
        with pytest.raises(EngineError):  # its pooled connection breaks: the next one is refused
            await publisher.publish("chat:failover", b"lost", history=KEEP)
        on_dead, on_healthy = await asyncio.gather(
            publisher.publish("chat:failover", b"lost", history=KEEP),
            publisher.publish(healthy, b"kept", history=KEEP),
            return_exceptions=True,
        )
        assert isinstance(on_dead, EngineError), on_dead
        assert not isinstance(on_healthy, BaseException) and on_healthy.position.offset == 1
        await asyncio.to_thread(cluster.wait_for_failover, killed)
        await events.wait_for(lambda: bool(events.of("resumed")))
        assert subscriber.reconnects >= 1
        async with asyncio.timeout(20):
            while True:
                try:
                    second = await publisher.publish(
                        "chat:failover", b"2", history=KEEP, idempotency_key="k2"
                    )
                    break
                except EngineError:
                    await asyncio.sleep(0.1)
        await events.wait_for(lambda: len(events.of("publication", "chat:failover")) == 2)
        received = events.of("publication", "chat:failover")[1]
        assert received.position == second.position
        assert second.position.epoch == first.position.epoch and second.position.offset == 2
        kept, top = await subscriber.history("chat:failover", limit=-1)
        assert [p.data for p in kept] == [b"1", b"2"] and top == second.position
    finally:
        for engine in (subscriber, publisher):
            await engine.close()
            await engine.connector.aclose()
        await asyncio.to_thread(cluster.stop)


async def test_a_hung_shard_is_taken_out_alone_and_comes_back(tmp_path: Path) -> None:
    """A primary and its replica SIGSTOP-ped (a hung shard: connections accepted, nothing answered). The
    subscribing engine finds that shard's connection silent and takes it out alone (``shards_down``), is
    still ready, keeps receiving a channel on another shard, and cannot count the hung node as back merely
    because it accepts a connection (its anchor subscription must be confirmed). Let go, the shard is
    connected again, fan-out resumed is said, and its channel delivers."""
    cluster = await asyncio.to_thread(
        RedisClusterNodes(tmp_path / "cluster", require_full_coverage=False).start
    )
    prefix = unique_prefix()
    events = Recorder()
    subscriber = RedisEngine(
        cluster_connector(cluster),
        prefix=prefix,
        timeout=1.0,
        pubsub_ping_interval=1.0,
        reconnect_min_delay=0.05,
        reconnect_max_delay=0.5,
    )
    publisher = RedisEngine(cluster_connector(cluster), prefix=prefix)
    await subscriber.start(events)
    await publisher.start()
    hung, owner = "chat:hung", cluster.primary_for(f"{prefix}.stream.{channel_part('chat:hung')}")
    healthy = next(
        c for c in (f"chat:fine-{n}" for n in range(50))
        if cluster.primary_for(f"{prefix}.stream.{channel_part(c)}").port != owner.port
    )  # fmt: skip
    paused = [owner, cluster.replica_of(owner)]
    try:
        for channel in (hung, healthy):
            await subscriber.subscribe(channel)
        for node in paused:
            node.process.signal(signal.SIGSTOP)
        try:
            async with asyncio.timeout(30):
                for _ in itertools.count():  # polled: nothing signals it
                    if subscriber.shards_down == [f"{owner.host}:{owner.port}"]:
                        break
                    await asyncio.sleep(0.1)
            await subscriber.ping()  # ready: the other shards are up
            for n in range(3):
                # Retried (same idempotency key, so stored once): a healthy shard's publish can still
                # time out while another shard hangs - the commands' client, not pub/sub; see
                # docs/reliability.md, "Redis Cluster" (left).
                async with asyncio.timeout(20):
                    for _ in itertools.count():
                        try:
                            await publisher.publish(
                                healthy, str(n).encode(), history=KEEP, idempotency_key=f"{n}"
                            )
                            break
                        except EngineError:
                            await asyncio.sleep(0.1)
            await events.wait_for(lambda: len(events.of("publication", healthy)) == 3)
            assert [e.publication.data for e in events.of("publication", healthy) if e.publication] == [
                b"0",
                b"1",
                b"2",
            ]
            reconnects = subscriber.reconnects
            await asyncio.sleep(1.5)  # several repair attempts at the hung node (backoff ≤ 0.5 s)
            assert subscriber.shards_down == [f"{owner.host}:{owner.port}"]
            assert subscriber.reconnects == reconnects  # never "whole" while it hangs
        finally:
            for node in paused:
                node.process.signal(signal.SIGCONT)
        await events.wait_for(lambda: bool(events.of("resumed")))
        assert subscriber.shards_down == []
        await publisher.publish(hung, b"back", history=KEEP)
        await events.wait_for(lambda: len(events.of("publication", hung)) == 1)
    finally:
        for engine in (subscriber, publisher):
            await engine.close()
            await engine.connector.aclose()
        await asyncio.to_thread(cluster.stop)


async def test_two_engines_on_the_cluster_share_fanout_and_control(redis_cluster: RedisClusterNodes) -> None:
    prefix = unique_prefix()
    nodes = [Node(RedisEngine(cluster_connector(redis_cluster), prefix=prefix), Recorder()) for _ in range(2)]
    for node in nodes:
        await node.engine.start(node.events)
    a, b = nodes
    try:
        for channel in ("chat:one", "chat:two", "chat:three"):
            await b.engine.subscribe(channel)
            await a.engine.publish(channel, channel.encode(), history=KEEP)
        await a.engine.publish_control(b"to every node")
        await b.events.wait_for(lambda: len(b.events.of("publication")) == 3 and bool(b.events.of("control")))
        assert {e.channel: e.publication.data for e in b.events.of("publication") if e.publication} == {
            c: c.encode() for c in ("chat:one", "chat:two", "chat:three")
        }
        await b.engine.unsubscribe("chat:two")
        await a.engine.publish("chat:two", b"late", history=KEEP)
        await a.engine.publish("chat:one", b"next", history=KEEP)
        await b.events.wait_for(lambda: len(b.events.of("publication")) == 4)
        assert b.events.of("publication")[-1].channel == "chat:one"  # nothing more on chat:two
        # A subscribe's and a leave's scripts touch presence and stream keys and the shard channel of
        # one slot: they run on its shard.
        await a.engine.history_with_presence("chat:three", ALICE, presence_ttl_seconds=30)
        await a.engine.leave_with_presence("chat:three", ALICE)
        await b.events.wait_for(lambda: bool(b.events.of("leave", "chat:three")))
        assert await a.engine.presence("chat:three") == {}
    finally:
        for node in nodes:
            await node.engine.close()
            await node.engine.connector.aclose()


async def test_export_erase_and_retention_reach_every_shard(redis_cluster: RedisClusterNodes) -> None:
    """The data-rights calls scan every primary: a person's publications and presence on channels of all
    three shards are exported, then erased; retention drops a namespace's old publications everywhere."""
    prefix = unique_prefix()
    clock = [1_700_000_000.0]
    engine = RedisEngine(cluster_connector(redis_cluster), prefix=prefix, wall_clock=lambda: clock[0])
    await engine.start(Recorder())
    ann, ben = ClientInfo(user="ann", client="a1"), ClientInfo(user="ben", client="b1")
    channels = [f"chat:r{n}" for n in range(6)] + ["chat:{odd}"]
    try:
        for channel in channels:
            await engine.publish(channel, b"from ann", info=ann, history=KEEP)
            await engine.publish(channel, b"from ben", info=ben, history=KEEP)
            await engine.add_presence(channel, ann, ttl_seconds=60)
        shards = {redis_cluster.primary_for(f"{prefix}.stream.{channel_part(c)}").port for c in channels}
        assert len(shards) == 3
        exported = await engine.personal_data("ann")
        assert exported.publications.keys() == set(channels)
        assert all([p.data for p in kept] == [b"from ann"] for kept in exported.publications.values())
        assert exported.presence.keys() == set(channels)
        removed = await engine.erase_personal("ann")
        assert removed["publications"] == len(channels) and removed["presence"] == len(channels)
        after = await engine.personal_data("ann")
        assert not after.publications and not after.presence
        for channel in channels:  # ben's publications stay, at their offsets
            kept, top = await engine.history(channel, limit=-1)
            assert [(p.offset, p.data) for p in kept] == [(2, b"from ben")] and top.offset == 2
        # Retention: everything of namespace chat published before the cut goes, on every shard.
        clock[0] += 100
        await engine.publish("chat:r0", b"new", info=ben, history=KEEP)
        gone = await engine.expire_history("chat", older_than_ms=int((clock[0] - 50) * 1000))
        assert gone == len(channels)
        kept, _ = await engine.history("chat:r0", limit=-1)
        assert [p.data for p in kept] == [b"new"]
    finally:
        await engine.close()
        await engine.connector.aclose()


async def test_replica_durability_waits_for_the_replica_of_each_channels_shard(
    redis_cluster: RedisClusterNodes,
) -> None:
    """``durability=replica`` on a Cluster: ``WAIT 1`` goes to the primary of the channel's slot on the
    script's connection; a publication is acknowledged and delivered only once that shard's replica has
    it. With the replica stopped the publish is refused and nothing is delivered; once it is back, the
    next publication delivers both, in offset order."""
    prefix = unique_prefix()
    events = Recorder()
    subscriber = RedisEngine(cluster_connector(redis_cluster), prefix=prefix)
    publisher = RedisEngine(
        cluster_connector(redis_cluster),
        prefix=prefix,
        durability=Durability.REPLICA,
        replica_wait_ms=1000,
        timeout=5.0,
    )
    await subscriber.start(events)
    await publisher.start()
    channels = [f"chat:sure-{n}" for n in range(6)]
    try:
        for channel in channels:
            await subscriber.subscribe(channel)
            result = await publisher.publish(channel, b"1", history=KEEP)
            assert result.position.offset == 1
        await events.wait_for(lambda: len(events.of("publication")) == len(channels))
        assert publisher.unconfirmed == 0
        shards = {redis_cluster.primary_for(f"{prefix}.stream.{channel_part(c)}").port for c in channels}
        assert len(shards) >= 2  # WAIT reached more than one shard's primary

        channel = channels[0]
        owner = redis_cluster.primary_for(f"{prefix}.stream.{channel_part(channel)}")
        replica = redis_cluster.replica_of(owner)
        replica.process.signal(signal.SIGSTOP)
        try:
            with pytest.raises(EngineError, match="not confirmed by a replica"):
                await publisher.publish(channel, b"2", history=KEEP)
        finally:
            replica.process.signal(signal.SIGCONT)
        assert publisher.unconfirmed == 1
        await publisher.publish(channel, b"3", history=KEEP)
        await events.wait_for(lambda: len(events.of("publication", channel)) == 3)
        delivered = [
            (e.position.offset, e.publication.data)
            for e in events.of("publication", channel)
            if e.position and e.publication
        ]
        assert delivered == [(1, b"1"), (2, b"2"), (3, b"3")]
    finally:
        for engine in (subscriber, publisher):
            await engine.close()
            await engine.connector.aclose()
