"""Bulkhead: a hung Neo4j never delays message delivery.

A real worker (living core and projector on, a real Redis) reaches the run's real Neo4j through a
loopback proxy that can hold every byte (``FaultProxy``): to the worker, Neo4j hangs mid-
conversation, as a SIGSTOP-ed server or a black-holed network would. Meanwhile real SDK clients
publish numbered messages (each acknowledged), others receive them, a reporter keeps sending
emotional states (events the projector must write to the hung Neo4j), and the publisher's own
connection has a graph query outstanding. The test compares the delivery latencies of the same
stream before, during and after the stall, checks every publication reached every subscriber,
and that the projection, behind during the stall, catches up afterwards.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
from collections.abc import Callable
from typing import Any

import centrifuge
import neo4j
import pytest

from tests.harness.faults import FaultProxy
from tests.harness.neo4j import Neo4jServer
from tests.harness.redis import RedisServer
from tests.harness.worker import WorkerProcess
from tests.worker.transport.conftest import Clients

pytestmark = [pytest.mark.redis, pytest.mark.neo4j]

StartWorker = Callable[..., WorkerProcess]
CHANNEL = "stream:bulkhead"
STALL_S = 24.0
"""Longer than the projector's deadline for one Neo4j transaction (15 s + 5 s), so it gives up and
retries into the still-hung server during the stall."""
INTERVAL_S = 0.1
_prefixes = itertools.count()


class Arrivals(centrifuge.SubscriptionEventHandler):  # type: ignore[misc]
    """When each numbered publication arrived (event-loop time; the publisher uses the same clock)."""

    def __init__(self) -> None:
        self.at: dict[int, float] = {}
        self.order: list[int] = []

    async def on_publication(self, ctx: Any) -> None:
        n = int(ctx.pub.data["n"])
        self.order.append(n)
        self.at.setdefault(n, asyncio.get_running_loop().time())


class Publisher:
    """Publishes numbered messages at a steady pace, one acknowledged publish at a time."""

    def __init__(self, client: centrifuge.Client) -> None:
        self.client = client
        self.sent_at: dict[int, float] = {}
        self.acked_at: dict[int, float] = {}
        self.phase_of: dict[int, str] = {}
        self._next = itertools.count(1)

    async def run(self, phase: str, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end:
            n = next(self._next)
            self.phase_of[n] = phase
            self.sent_at[n] = loop.time()
            await self.client.publish(CHANNEL, {"n": n})
            self.acked_at[n] = loop.time()
            await asyncio.sleep(INTERVAL_S)

    def numbers(self, phase: str) -> list[int]:
        return [n for n, p in self.phase_of.items() if p == phase]


async def states_in_graph(driver: neo4j.AsyncDriver, user: str) -> int:
    records, _, _ = await driver.execute_query(
        "MATCH (s:State {user_id: $user}) RETURN count(s) AS n", {"user": user}
    )
    return int(records[0]["n"])


async def eventually(check: Callable[[], Any], *, within_s: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"{what} did not happen within {within_s:g} s")
        await asyncio.sleep(0.2)


async def test_a_hung_neo4j_never_delays_message_delivery(
    redis_server: RedisServer,
    neo4j_server: Neo4jServer,
    neo4j_driver: neo4j.AsyncDriver,
    start_worker: StartWorker,
    clients: Clients,
) -> None:
    proxy = await FaultProxy(neo4j_server.port).start()
    namespaces = {
        "stream": {
            "history_size": 10_000,
            "history_ttl_seconds": 600,
            "force_recovery": True,
            "force_positioning": True,
            "allow_subscribe_for_client": True,
            "allow_publish_for_client": True,
        }
    }
    worker = start_worker(
        {
            "RESONANCE_ENGINE": "redis",
            "RESONANCE_REDIS_URL": redis_server.url,
            "RESONANCE_REDIS_PREFIX": f"bulkhead-{next(_prefixes)}",
            "RESONANCE_NAMESPACES": json.dumps(namespaces),
            "RESONANCE_LIMITS__USER_PUBLISH_RATE": "0",
            "RESONANCE_NEO4J__URI": f"bolt://127.0.0.1:{proxy.port}",
            "RESONANCE_NEO4J__USER": neo4j_server.user,
            "RESONANCE_NEO4J__PASSWORD": neo4j_server.password,
        },
        name="bulkhead",
    )
    try:
        subscribers: list[Arrivals] = []
        for i in range(3):
            client, _ = await clients.connected(worker.ws_url, worker.token(f"listener-{i}"))
            arrivals = Arrivals()
            sub = client.new_subscription(CHANNEL, events=arrivals)
            await sub.subscribe()
            await sub.ready(timeout=10)
            subscribers.append(arrivals)
        publisher_client, _ = await clients.connected(worker.ws_url, worker.token("publisher"))
        publisher = Publisher(publisher_client)
        reporter, _ = await clients.connected(worker.ws_url, worker.token("reporter"))

        reports = 0

        async def report(count: int) -> None:
            nonlocal reports
            for _ in range(count):
                reports += 1
                await reporter.rpc("state.report", {"valence": (reports % 9 - 4) / 4, "arousal": 0.5})
                await asyncio.sleep(0.2)

        # The projector is up and writing through the proxy before the stall.
        await report(3)

        async def projected() -> bool:
            return await states_in_graph(neo4j_driver, "reporter") == reports

        await eventually(projected, within_s=120, what="the first states projected")
        await publisher.run("before", 6.0)

        proxy.stall()
        reporting = asyncio.create_task(report(int(STALL_S / 0.2)))
        # A graph query on the publisher's own connection hangs for its deadline, beside the publishes.
        query = asyncio.create_task(publisher_client.rpc("graph.timeline", {}))
        publishing = asyncio.create_task(publisher.run("stalled", STALL_S))
        await asyncio.sleep(STALL_S / 2)
        # A client connecting in the middle of the stall is served as usual.
        late_client, _ = await clients.connected(worker.ws_url, worker.token("late"))
        late = Arrivals()
        late_sub = late_client.new_subscription(CHANNEL, events=late)
        await late_sub.subscribe()
        await late_sub.ready(timeout=10)
        joined_after = max(publisher.sent_at)
        with pytest.raises(centrifuge.ReplyError) as refused:
            await query
        acked_while_query_hung = len(publisher.acked_at)
        await asyncio.gather(publishing, reporting)
        held_during_stall = proxy.held_bytes
        behind = reports - await states_in_graph(neo4j_driver, "reporter")
        proxy.resume()

        await publisher.run("after", 6.0)
        await eventually(projected, within_s=180, what="the projection catching up")

        async def delivered() -> bool:
            return all(len(s.at) == len(publisher.sent_at) for s in subscribers)

        await eventually(delivered, within_s=30, what="every publication delivered")
    finally:
        await proxy.close()

    # The stall was real: the projector's bytes were held, it fell behind, and its write failed at a
    # deadline (the driver's 5 s Bolt handshake on a new connection, or the 20 s transaction limit).
    assert held_during_stall > 0
    assert behind > 0
    assert any(
        str(r.get("error", "")).startswith("neo4j write")
        for r in worker.log_records()
        if r.get("msg", "").startswith("projector failed")
    ), "the projector never gave up on the hung Neo4j during the stall"
    assert refused.value.code == 108
    assert acked_while_query_hung > len(publisher.numbers("before"))

    # Every publication reached every subscriber, once and in order; the late one got what followed it.
    every = sorted(publisher.sent_at)
    assert sorted(publisher.acked_at) == every
    for arrivals in subscribers:
        assert arrivals.order == every
    assert [n for n in late.order if n > joined_after] == [n for n in every if n > joined_after]

    def latencies(phase: str) -> list[float]:
        return [s.at[n] - publisher.sent_at[n] for n in publisher.numbers(phase) for s in subscribers]

    before, stalled, after = latencies("before"), latencies("stalled"), latencies("after")
    for phase, values in (("before", before), ("stalled", stalled), ("after", after)):
        print(
            f"delivery latency {phase}: n={len(values)} median={statistics.median(values) * 1000:.1f} ms "
            f"max={max(values) * 1000:.1f} ms"
        )
    # No delivery waited for the hung dependency: not one came anywhere near the projector's
    # 20 s deadline or the stall, which a shared path would have made every message wait out.
    assert max(stalled) < STALL_S / 8, f"a delivery waited {max(stalled):.2f} s during the stall"
    # And the stall's latencies are of the same order as the unstalled ones around it.
    calm_median = max(statistics.median(before), statistics.median(after))
    assert statistics.median(stalled) < 10 * calm_median, (
        statistics.median(before),
        statistics.median(stalled),
        statistics.median(after),
    )


@pytest.mark.parametrize(
    ("circuit_only", "sheds"),
    [
        # The default: Neo4j pain only opens the neo4j circuit.
        pytest.param(None, False, id="default"),
        # The control, so the default's test can fail: opted out, the same outage stresses the worker.
        pytest.param("[]", True, id="opted-out"),
    ],
)
async def test_an_unreachable_neo4j_never_sheds_clients(
    circuit_only: str | None,
    sheds: bool,
    neo4j_server: Neo4jServer,
    start_worker: StartWorker,
    clients: Clients,
) -> None:
    """Neo4j unreachable from the start: the projector keeps failing its schema, which is pain the
    status shows - but admission and delivery must not depend on it. Threshold 1, so the pain
    reaches twice the overload level (3) within seconds."""
    proxy = await FaultProxy(neo4j_server.port).start()
    proxy.cut()
    try:
        env = {
            "RESONANCE_LIVING__THYROID_THRESHOLD": "1",
            "RESONANCE_NEO4J__URI": f"bolt://127.0.0.1:{proxy.port}",
            "RESONANCE_NEO4J__USER": neo4j_server.user,
            "RESONANCE_NEO4J__PASSWORD": neo4j_server.password,
            "RESONANCE_NAMESPACES": '{"chat": {"allow_subscribe_for_client": true}}',
        }
        if circuit_only is not None:
            env["RESONANCE_LIVING__THYROID_CIRCUIT_ONLY_SOURCES"] = circuit_only
        worker = start_worker(env, name="graphless")

        async def pain_past_overload() -> bool:
            _, status = await asyncio.to_thread(worker.http, "GET", "/thyroid/status")
            return bool(status["sources"]["neo4j_failure"] >= 2 * 3 * 1)

        await eventually(pain_past_overload, within_s=120, what="Neo4j pain past the overload level")
        _, status = await asyncio.to_thread(worker.http, "GET", "/thyroid/status")
        if sheds:
            assert status["state"] != "calm", status
            return
        assert status["state"] == "calm", status
        client, _ = await clients.connected(worker.ws_url, worker.token("newcomer"))
        arrivals = Arrivals()
        sub = client.new_subscription("chat:x", events=arrivals)
        await sub.subscribe()
        await sub.ready(timeout=10)
        code, _ = await asyncio.to_thread(worker.api, "publish", {"channel": "chat:x", "data": {"n": 1}})
        assert code == 200

        async def received() -> bool:
            return arrivals.order == [1]

        await eventually(received, within_s=10, what="the publication delivered")
    finally:
        await proxy.close()
