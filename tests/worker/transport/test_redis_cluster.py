"""Two worker processes on one real Redis - on a real six-node Redis Cluster
(``RESONANCE_REDIS_MODE=cluster``), and on a TLS-only Redis - behave as one server, driven by real SDK
clients."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import centrifuge
import pytest
import redis.asyncio as aioredis

from tests.harness.redis import RedisServer
from tests.harness.rediscluster import RedisClusterNodes
from tests.harness.worker import WorkerProcess, api_call
from tests.worker.transport.conftest import Clients, SubRecorder
from tests.worker.transport.test_sdk import metric, subscribed

pytestmark = pytest.mark.redis

StartWorker = Callable[..., WorkerProcess]


def redis_env(request: pytest.FixtureRequest, kind: str, prefix: str) -> dict[str, str]:
    """A worker's settings for the run's one Redis (``redis``), its TLS-only Redis (``tls``: a
    ``redis://`` URL and ``RESONANCE_REDIS_TLS*``, as the operator sets them) or its Redis Cluster."""
    if kind == "cluster":
        cluster: RedisClusterNodes = request.getfixturevalue("redis_cluster")
        nodes = ",".join(f'"{host}:{port}"' for host, port in cluster.startup_nodes[:2])
        return {
            "RESONANCE_ENGINE": "redis",
            "RESONANCE_REDIS_MODE": "cluster",
            "RESONANCE_REDIS_URL": cluster.url,
            "RESONANCE_REDIS_CLUSTER_NODES": f"[{nodes}]",
            "RESONANCE_REDIS_PREFIX": prefix,
        }
    if kind == "tls":
        secure: RedisServer = request.getfixturevalue("redis_tls_server")
        assert secure.tls is not None
        return {
            "RESONANCE_ENGINE": "redis",
            "RESONANCE_REDIS_URL": f"redis://{secure.host}:{secure.port}/0",
            "RESONANCE_REDIS_PASSWORD": secure.password or "",
            "RESONANCE_REDIS_TLS": "true",
            "RESONANCE_REDIS_TLS_CA_FILE": str(secure.tls.ca),
            "RESONANCE_REDIS_PREFIX": prefix,
        }
    server: RedisServer = request.getfixturevalue("redis_server")
    return {"RESONANCE_ENGINE": "redis", "RESONANCE_REDIS_URL": server.url, "RESONANCE_REDIS_PREFIX": prefix}


@pytest.fixture(scope="module", params=["redis", "cluster"])
def pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[WorkerProcess, WorkerProcess]]:
    """Two workers on the run's Redis (or its Cluster), shared by this module's tests of that kind: each test
    has its own channels and users, and its clients leave when it ends (two worker starts per kind, not
    two per test)."""
    env = redis_env(request, request.param, f"test-{uuid.uuid4().hex[:8]}")
    workdir = tmp_path_factory.mktemp(f"pair-{request.param}")
    started: list[WorkerProcess] = []
    try:
        for name in ("worker-a", "worker-b"):
            started.append(WorkerProcess(workdir, env, name=name).start())
        yield started[0], started[1]
    finally:
        for worker in started:
            worker.stop()


async def test_publication_on_one_worker_reaches_clients_of_the_other(
    pair: tuple[WorkerProcess, WorkerProcess], clients: Clients
) -> None:
    a, b = pair
    on_a, _ = await clients.connected(a.ws_url, a.token("ann"))
    on_b, _ = await clients.connected(b.ws_url, b.token("ben"))
    _, a_events = await subscribed(on_a, "chat:cross", join_leave=True)
    b_sub, _ = await subscribed(on_b, "chat:cross")
    assert (await a_events.wait_for("join")).info.user == "ann"
    assert (await a_events.wait_for("join")).info.user == "ben"  # a join published on B
    await b_sub.publish({"from": "b"})
    ctx = await a_events.wait_for("publication")
    assert ctx.pub.data == {"from": "b"} and ctx.pub.info.user == "ben"
    status, _ = await api_call(a, "publish", {"channel": "chat:cross", "data": "via api on a"})
    assert status == 200
    assert (await a_events.wait_for("publication")).pub.data == "via api on a"
    presence = await b_sub.presence()
    assert {i.user for i in presence.clients.values()} == {"ann", "ben"}
    await b_sub.unsubscribe()
    assert (await a_events.wait_for("leave")).info.user == "ben"


async def test_recovery_after_reconnecting_to_the_other_worker(
    pair: tuple[WorkerProcess, WorkerProcess], clients: Clients
) -> None:
    a, b = pair
    first, _ = await clients.connected(a.ws_url, a.token("cy"))
    _, events = await subscribed(first, "chat:move")
    await api_call(a, "publish", {"channel": "chat:move", "data": 1})
    seen = (await events.wait_for("publication")).pub
    subscribed_ctx = next(ctx for name, ctx in events.seen if name == "subscribed")
    epoch = subscribed_ctx.stream_position.epoch
    await first.disconnect()
    for n in (2, 3):
        await api_call(a, "publish", {"channel": "chat:move", "data": n})

    async def get_state(channel: str) -> centrifuge.StreamPosition:
        return centrifuge.StreamPosition(offset=seen.offset, epoch=epoch)

    second, _ = await clients.connected(b.ws_url, b.token("cy"))
    moved = SubRecorder()
    sub = second.new_subscription("chat:move", events=moved, get_state=get_state)
    await sub.subscribe()
    ctx = await moved.wait_for("subscribed")
    assert ctx.recovered and ctx.was_recovering
    got = [(await moved.wait_for("publication")).pub.data for _ in range(2)]
    assert got == [2, 3]


async def test_disconnect_through_the_api_of_the_other_worker(
    pair: tuple[WorkerProcess, WorkerProcess], clients: Clients
) -> None:
    a, b = pair
    _, events = await clients.connected(a.ws_url, a.token("dee"))
    status, _ = await api_call(b, "disconnect", {"user": "dee", "code": 4500, "reason": "bye"})
    assert status == 200
    assert (await events.wait_for("disconnected")).code == 4500


@pytest.mark.parametrize("kind", ["redis", "cluster"])
async def test_user_publish_rate_is_shared_by_both_workers(
    request: pytest.FixtureRequest, kind: str, start_worker: StartWorker, clients: Clients
) -> None:
    import uuid

    env = redis_env(request, kind, f"rate-{uuid.uuid4().hex[:8]}") | {
        "RESONANCE_LIMITS__USER_PUBLISH_RATE": "0.2",
        "RESONANCE_LIMITS__USER_PUBLISH_BURST": "2",
    }
    a, b = start_worker(env, name="rate-a"), start_worker(env, name="rate-b")
    on_a, _ = await clients.connected(a.ws_url, a.token("eve"))
    on_b, _ = await clients.connected(b.ws_url, b.token("eve"))
    sub_a, _ = await subscribed(on_a, "chat:rate")
    sub_b, _ = await subscribed(on_b, "chat:rate")
    await sub_a.publish(1)
    await sub_b.publish(2)
    with pytest.raises(centrifuge.ReplyError) as error:
        await sub_a.publish(3)
    assert error.value.code == 111


async def test_history_and_presence_of_one_channel_are_read_on_the_other_worker(
    request: pytest.FixtureRequest, pair: tuple[WorkerProcess, WorkerProcess], clients: Clients
) -> None:
    a, b = pair
    on_a, _ = await clients.connected(a.ws_url, a.token("fay"))
    on_b, _ = await clients.connected(b.ws_url, b.token("gus"))
    a_sub, _ = await subscribed(on_a, "chat:hist")
    b_sub, _ = await subscribed(on_b, "chat:hist")
    for n in range(3):
        await a_sub.publish({"n": n})
    history = await b_sub.history(limit=10)
    assert [p.data for p in history.publications] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert history.offset == 3 and history.epoch
    newest = await b_sub.history(limit=1, reverse=True)
    assert [p.data for p in newest.publications] == [{"n": 2}]
    stats = await b_sub.presence_stats()
    assert (stats.num_clients, stats.num_users) == (2, 2)
    status, body = await api_call(b, "history", {"channel": "chat:hist", "limit": 10})
    assert status == 200 and [p["data"] for p in body["result"]["publications"]] == [
        {"n": n} for n in range(3)
    ]
    if request.node.callspec.params["pair"] == "cluster":
        # Really on the Cluster: the channel's stream sits under its hash tag.
        cluster: RedisClusterNodes = request.getfixturevalue("redis_cluster")
        admin = cluster.async_client()
        try:
            found = [key async for key in admin.scan_iter(match="test-*.stream.{chat:hist}")]
        finally:
            await admin.aclose()
        assert len(found) == 1


async def test_two_workers_on_a_tls_only_redis_are_one_server(
    request: pytest.FixtureRequest, start_worker: StartWorker, clients: Clients
) -> None:
    """The SDK flows above, once, on two workers that reach a TLS-only Redis with the settings the
    operator gives them (``RESONANCE_REDIS_TLS``, the CA file): fan-out, join/leave, presence,
    recovery on the other worker, a disconnect through the other's API, history read back."""
    env = redis_env(request, "tls", f"tls-{uuid.uuid4().hex[:8]}")
    both = start_worker(env, name="tls-a"), start_worker(env, name="tls-b")
    await test_publication_on_one_worker_reaches_clients_of_the_other(both, clients)
    await test_recovery_after_reconnecting_to_the_other_worker(both, clients)
    await test_disconnect_through_the_api_of_the_other_worker(both, clients)
    status, body = await api_call(both[1], "history", {"channel": "chat:move", "limit": 10})
    assert status == 200 and [p["data"] for p in body["result"]["publications"]] == [1, 2, 3]
    secure: RedisServer = request.getfixturevalue("redis_tls_server")
    assert secure.tls is not None
    check = aioredis.Redis.from_url(secure.url, ssl_ca_certs=str(secure.tls.ca))
    try:  # really stored on the TLS server
        assert [key async for key in check.scan_iter(match=f"{env['RESONANCE_REDIS_PREFIX']}.stream.*")]
    finally:
        await check.aclose()


def failover_env(cluster: RedisClusterNodes, prefix: str) -> dict[str, str]:
    """A worker's settings for a failover on ``cluster``: every node a seed, no publish rate limit, and
    positions checked every 2 s (so a gap is found within the tests' waits)."""
    return {
        "RESONANCE_ENGINE": "redis",
        "RESONANCE_REDIS_MODE": "cluster",
        "RESONANCE_REDIS_URL": cluster.url,
        "RESONANCE_REDIS_CLUSTER_NODES": json.dumps(
            [f"{host}:{port}" for host, port in cluster.startup_nodes]
        ),
        "RESONANCE_REDIS_PREFIX": prefix,
        "RESONANCE_LIMITS__USER_PUBLISH_RATE": "0",
        "RESONANCE_POSITION_CHECK_SECONDS": "2",
    }


async def publish_until_stored(worker: WorkerProcess, channel: str, n: int) -> None:
    """Publish ``n`` on ``channel`` through ``worker``'s server API until acknowledged: refused while the
    slot has no primary, retried with the same idempotency key (so stored once)."""
    body = {"channel": channel, "data": n, "idempotency_key": f"{channel}-{n}"}
    async with asyncio.timeout(40):
        for _ in itertools.count():
            if (await api_call(worker, "publish", body))[0] == 200:
                return
            await asyncio.sleep(0.2)


async def test_a_shard_failover_under_two_workers_loses_nothing_a_replica_had(
    tmp_path: Path, start_worker: StartWorker, clients: Clients
) -> None:
    """The primary of a channel's slot is SIGKILL-ed between publications: its replica takes the slot over,
    both workers follow the new slot map, the publishing worker publishes again (a publish refused during
    the failover is retried with its idempotency key), and the SDK client subscribed on the other worker
    ends with every acknowledged publication, in order, once."""
    cluster = await asyncio.to_thread(RedisClusterNodes(tmp_path / "cluster").start)
    try:
        prefix = f"fo-{uuid.uuid4().hex[:8]}"
        env = failover_env(cluster, prefix)
        a, b = start_worker(env, name="worker-a"), start_worker(env, name="worker-b")
        subscriber, _ = await clients.connected(b.ws_url, b.token("sue"))
        _, events = await subscribed(subscriber, "chat:failover")

        for n in range(5):
            await publish_until_stored(a, "chat:failover", n)
        stream = f"{prefix}.stream.{{chat:failover}}"
        owner = cluster.primary_for(stream)
        assert cluster.client(owner).wait(1, 2000) >= 1  # its replica has all five
        killed = await asyncio.to_thread(cluster.kill_primary, stream)
        await asyncio.to_thread(cluster.wait_for_failover, killed)
        for n in range(5, 10):
            await publish_until_stored(a, "chat:failover", n)
        received: list[int] = []
        async with asyncio.timeout(30):
            while received[-1:] != [9]:
                received.append((await events.wait_for("publication", timeout=30)).pub.data)
        assert received == list(range(10))
        status, body = await api_call(b, "history", {"channel": "chat:failover", "limit": 100})
        assert status == 200 and [p["data"] for p in body["result"]["publications"]] == list(range(10))
        # Both workers saw the shard's new primary (their sharded pub/sub reconnected to it), once.
        for worker in (a, b):
            async with asyncio.timeout(30):
                while not metric(text := worker.metrics(), "resonance_redis_failovers_total", mode="cluster"):  # noqa: ASYNC110 - polling /metrics
                    await asyncio.sleep(0.2)
            assert metric(text, "resonance_redis_failovers_total", mode="cluster") == 1, text
    finally:
        await asyncio.to_thread(cluster.stop)


async def test_a_shard_without_a_primary_stops_only_its_own_channels(
    tmp_path: Path, start_worker: StartWorker, clients: Clients
) -> None:
    """One shard's primary is SIGKILL-ed while its replica is SIGSTOP-ped, so its slots have no primary
    for as long as the test likes (the Cluster runs with ``cluster-require-full-coverage no``). Meanwhile
    a channel on a healthy shard keeps delivering, live and without a gap, to an SDK client on the other
    worker, and that worker stays ready, naming the shard that is down. The replica is let go, takes the
    slots over, and the same client ends with every acknowledged publication of the dead shard's channel,
    in order, once (recovered from history), and the healthy channel's, in order, once."""
    cluster = await asyncio.to_thread(
        RedisClusterNodes(tmp_path / "cluster", require_full_coverage=False).start
    )
    try:
        prefix = f"sd-{uuid.uuid4().hex[:8]}"
        env = failover_env(cluster, prefix)
        a, b = start_worker(env, name="worker-a"), start_worker(env, name="worker-b")
        down = "chat:down"
        owner = cluster.primary_for(f"{prefix}.stream.{{{down}}}")
        healthy = next(
            c for c in (f"chat:up-{n}" for n in range(50))
            if cluster.primary_for(f"{prefix}.stream.{{{c}}}").port != owner.port
        )  # fmt: skip
        subscriber, _ = await clients.connected(b.ws_url, b.token("sue"))
        _, down_events = await subscribed(subscriber, down)
        _, up_events = await subscribed(subscriber, healthy)

        async def received(events: SubRecorder, last: int) -> list[int]:
            got: list[int] = []
            while got[-1:] != [last]:
                got.append((await events.wait_for("publication", timeout=40)).pub.data)
            return got

        for n in range(3):
            await publish_until_stored(a, down, n)
            await publish_until_stored(a, healthy, n)
        assert await received(down_events, 2) == [0, 1, 2]
        assert await received(up_events, 2) == [0, 1, 2]
        assert cluster.client(owner).wait(1, 2000) >= 1  # its replica has all three
        replica = cluster.replica_of(owner)
        replica.process.signal(signal.SIGSTOP)
        try:
            owner.kill()
            # The subscriber's worker notices the shard is gone, and stays ready for the others.
            async with asyncio.timeout(30):
                while not (ready := await asyncio.to_thread(b.http, "GET", "/ready"))[1].get("shards_down"):
                    assert ready[0] == 200, ready
                    await asyncio.sleep(0.2)
            assert ready[0] == 200 and ready[1]["shards_down"] == [f"{owner.host}:{owner.port}"], ready
            assert re.search(r"^resonance_redis_shards_down 1\.0$", b.metrics(), re.MULTILINE)
            status, _ = await api_call(a, "publish", {"channel": down, "data": "refused"})
            assert status != 200  # no primary: the publication is refused, never acknowledged
            for n in range(3, 10):  # the healthy shard delivers, each publication live, in order
                await publish_until_stored(a, healthy, n)
                assert (await up_events.wait_for("publication", timeout=15)).pub.data == n
            assert cluster.primary_for(f"{prefix}.stream.{{{down}}}").port == owner.port  # still no primary
        finally:
            replica.process.signal(signal.SIGCONT)
        await asyncio.to_thread(cluster.wait_for_failover, owner)
        for n in range(3, 6):
            await publish_until_stored(a, down, n)
        assert await received(down_events, 5) == [3, 4, 5]
        status, body = await api_call(b, "history", {"channel": down, "limit": 100})
        assert status == 200 and [p["data"] for p in body["result"]["publications"]] == list(range(6))
        await publish_until_stored(a, healthy, 10)
        assert await received(up_events, 10) == [10]
        async with asyncio.timeout(30):  # whole again: ready, no shard down
            while True:
                status, body = await asyncio.to_thread(b.http, "GET", "/ready")
                if status == 200 and "shards_down" not in body:
                    break
                await asyncio.sleep(0.2)
    finally:
        await asyncio.to_thread(cluster.stop)
