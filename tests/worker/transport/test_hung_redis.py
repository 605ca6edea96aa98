"""A hung Redis (every byte held by a ``FaultProxy``: no error, no reset), not a stopped one.

Every call has a deadline, so the worker answers while Redis hangs: ``/ready`` 503 and each publish
refused as temporary (503) instead of hanging. A refused publish may still reach Redis when the bytes
flow again (its answer was lost, not the command): a publisher that retries with an
``idempotency_key`` - as one should after a temporary error - gets each publication stored and
delivered exactly once, in order, and nothing acknowledged is lost.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

import pytest

from tests.harness.faults import FaultProxy, Ledger, LedgerSubscriber, stream_namespaces, wait_complete
from tests.harness.redis import RedisServer
from tests.harness.worker import WorkerProcess
from tests.worker.transport.conftest import Clients

pytestmark = pytest.mark.redis

StartWorker = Callable[..., WorkerProcess]
CHANNEL = "stream:hung"
STALL_S = 10.0
"""Past the command deadline (2 s) and the pub/sub silence limit (5 s ping + 2 s)."""
_prefixes = itertools.count()


async def test_a_hung_redis_is_answered_within_deadlines_and_loses_nothing(
    redis_server: RedisServer, start_worker: StartWorker, clients: Clients
) -> None:
    proxy = await FaultProxy(redis_server.port).start()
    try:
        worker = await asyncio.to_thread(
            start_worker,
            {
                "RESONANCE_ENGINE": "redis",
                "RESONANCE_REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0",
                "RESONANCE_REDIS_PREFIX": f"hung-{next(_prefixes)}",
                "RESONANCE_NAMESPACES": stream_namespaces(),
                "RESONANCE_LIMITS__USER_PUBLISH_RATE": "0",
                "RESONANCE_POSITION_CHECK_SECONDS": "1",
            },
        )
        ledger = Ledger()
        for i in range(2):
            client, _ = await clients.connected(worker.ws_url, worker.token(f"listener-{i}"))
            sub = client.new_subscription(CHANNEL, events=LedgerSubscriber(ledger, f"listener-{i}"))
            await sub.subscribe()
            await sub.ready(timeout=10)

        refused: list[int] = []  # HTTP status of every attempt that was not acknowledged
        numbers = itertools.count(1)

        async def publish_until_acked(n: int) -> None:
            ledger.sent += 1
            while True:
                status, _ = await asyncio.to_thread(
                    worker.api, "publish", {"channel": CHANNEL, "data": {"n": n}, "idempotency_key": f"n{n}"}
                )
                if status == 200:
                    ledger.acked.append(n)
                    return
                refused.append(status)
                await asyncio.sleep(0.2)

        for _ in range(5):
            await publish_until_acked(next(numbers))
        assert refused == []

        proxy.stall()
        loop = asyncio.get_running_loop()
        stall_ends = loop.time() + STALL_S
        ready_while_hung: list[int] = []
        publishing = asyncio.create_task(publish_until_acked(next(numbers)))
        while loop.time() < stall_ends:
            ready_while_hung.append((await asyncio.to_thread(worker.http, "GET", "/ready"))[0])
            await asyncio.sleep(0.5)
        assert not publishing.done()  # still retrying: nothing was acknowledged while Redis hung
        proxy.resume()
        await asyncio.wait_for(publishing, 30)
        for _ in range(5):
            await publish_until_acked(next(numbers))

        assert await wait_complete(ledger, timeout=30), ledger.summary()
        # Redis cut off while the clients leave: their clean-up (unsubscribing on a pub/sub
        # connection whose transport is closed) must not escape as an unhandled error.
        proxy.cut()
        await clients.close()
        await asyncio.sleep(1.0)
        unhandled = [r for r in worker.log_records() if r.get("logger") == "aiohttp.server"]
    finally:
        await proxy.close()

    # Each attempt got an answer - refused as temporary (503), never a hang the HTTP client gave
    # up on (status 0) - and readiness said so too.
    assert refused and set(refused) == {503}, refused
    assert ready_while_hung and set(ready_while_hung) == {503}, ready_while_hung
    summary = ledger.summary()
    assert summary["lost_among_acknowledged"] == 0
    assert summary["duplicates"] == 0 and summary["out_of_order_subscribers"] == 0, summary
    assert ledger.acked == list(range(1, 12))
    assert unhandled == [], unhandled
