"""Faults on real parts: a worker killed with SIGKILL in mid-stream, and Redis
restarted with and without persistence, while real centrifuge-python clients
receive a numbered stream published through the server API. Every run counts
sent, acknowledged and received publications: none acknowledged may be lost,
or the client must be told it was not recovered."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.harness.faults import Ledger, LedgerSubscriber, publish_steadily, stream_namespaces, wait_complete
from tests.harness.redis import RedisServer
from tests.harness.worker import WorkerProcess
from tests.worker.engines.test_two_workers import Relay
from tests.worker.transport.conftest import Clients

pytestmark = pytest.mark.redis

StartWorker = Callable[..., WorkerProcess]
_prefixes = itertools.count()


def redis_env(redis: RedisServer) -> dict[str, str]:
    return {
        "RESONANCE_ENGINE": "redis",
        "RESONANCE_REDIS_URL": redis.url,
        "RESONANCE_REDIS_PREFIX": f"faults-{next(_prefixes)}",
        "RESONANCE_NAMESPACES": stream_namespaces(),
        "RESONANCE_LIMITS__USER_PUBLISH_RATE": "0",
    }


async def subscribe_all(
    clients: Clients, url: str, worker: WorkerProcess, ledger: Ledger, channel: str, count: int
) -> None:
    for i in range(count):
        client, _ = await clients.connected(
            url, worker.token(f"listener-{i}"), min_reconnect_delay=0.3, max_reconnect_delay=1.0
        )
        sub = client.new_subscription(channel, events=LedgerSubscriber(ledger, f"listener-{i}"))
        await sub.subscribe()
        await sub.ready(timeout=10)


async def wait_ready(worker: WorkerProcess, status: int, timeout: float = 30.0) -> None:
    for _ in range(int(timeout / 0.1)):
        if (await asyncio.to_thread(worker.http, "GET", "/ready"))[0] == status:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"/ready never answered {status}")


async def test_kill_9_worker_mid_stream_loses_no_acknowledged_publication(
    redis_server: RedisServer, start_worker: StartWorker, clients: Clients
) -> None:
    env = redis_env(redis_server)
    doomed = start_worker(env, name="doomed")
    survivor = start_worker(env, name="survivor")
    relay = await Relay(doomed.port).start()  # the ingress in front of the pods
    ledger = Ledger()
    try:
        await subscribe_all(clients, relay.ws_url, doomed, ledger, "stream:kill", 4)
        publisher = asyncio.create_task(
            publish_steadily(ledger, lambda: survivor, "stream:kill", count=150, interval=0.02)
        )
        while len(ledger.acked) < 40:  # noqa: ASYNC110 - polling a counter the publisher task fills
            await asyncio.sleep(0.02)
        doomed.kill()  # SIGKILL mid-stream: no drain, no goodbye
        relay.switch(survivor.port)
        await publisher
        assert await wait_complete(ledger, timeout=30), ledger.summary()
    finally:
        await relay.close()
    summary = ledger.summary()
    assert summary["acknowledged"] == 150 and summary["lost_among_acknowledged"] == 0, summary
    assert summary["duplicates"] == 0 and summary["out_of_order_subscribers"] == 0, summary
    # Each client did come back through recovery, and was told it recovered.
    assert all(ledger.recoveries[c] and all(ledger.recoveries[c]) for c in ledger.received), ledger.recoveries


@pytest.mark.parametrize("persistence", [True, False], ids=["aof", "no-persistence"])
async def test_redis_restart_workers_go_not_ready_and_clients_recover_or_are_told(
    tmp_path: Path, start_worker: StartWorker, clients: Clients, persistence: bool
) -> None:
    redis = RedisServer(tmp_path / "restarted-redis", persistence=persistence).start()
    try:
        worker = start_worker(redis_env(redis), name="on-restarted-redis")
        ledger = Ledger()
        await subscribe_all(clients, worker.ws_url, worker, ledger, "stream:restart", 2)
        await publish_steadily(ledger, lambda: worker, "stream:restart", count=20, interval=0.01)
        assert await wait_complete(ledger, timeout=10)

        redis.stop()  # SIGTERM: with AOF on, Redis writes what it acknowledged before leaving
        await wait_ready(worker, 503)
        status, _ = await asyncio.to_thread(worker.api, "publish", {"channel": "stream:restart", "data": 1})
        assert status == 503  # refused, not acknowledged: the publisher knows to retry
        redis.start()
        await wait_ready(worker, 200)

        # Publishing resumes (numbers continue); the first few may race the engine's reconnect.
        for n in range(21, 61):
            ledger.sent += 1
            for _ in range(50):
                status, _ = await asyncio.to_thread(
                    worker.api, "publish", {"channel": "stream:restart", "data": {"n": n}}
                )
                if status == 200:
                    ledger.acked.append(n)
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.01)
        assert len(ledger.acked) == 60
        complete = await wait_complete(ledger, timeout=10 if not persistence else 30)
    finally:
        redis.stop()
    summary = ledger.summary()
    print(summary, {c: ledger.lost(c) for c in ledger.received}, ledger.recoveries)
    assert summary["duplicates"] == 0 and summary["out_of_order_subscribers"] == 0, summary
    if persistence:
        assert complete and summary["lost_among_acknowledged"] == 0, summary
        # Same epoch and offsets after the restart: nothing to recover, nothing missed.
        assert all(ledger.in_order(c) for c in ledger.received)
        assert all(not r or all(r) for r in ledger.recoveries.values()), ledger.recoveries
    else:
        # The streams were lost with Redis: each client noticed the new epoch on the first
        # publication after the restart, resubscribed, and was told honestly that it could not
        # recover (recovered=false). What it missed is only what came before that answer.
        assert all(r and not any(r) for r in ledger.recoveries.values()), ledger.recoveries
        for client in ledger.received:
            assert all(n > 20 for n in ledger.lost(client)), ledger.lost(client)
            assert ledger.received[client][-1] == 60
