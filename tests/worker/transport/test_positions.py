"""The periodic position check on real parts: a publication a worker never received (its Redis
connections cut while another worker published) reaches a real SDK client on a channel that then
stays quiet - through insufficient state and recovery - while a worker without the check leaves
its client behind until the next publication.

The two workers under test run in this process (the app ``create_app`` builds, served by aiohttp on
loopback; one checks every 0.3 s, one never) and reach the run's real Redis through a ``FaultProxy``;
the publisher is a real worker process on the same Redis, directly.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web
from resonance_worker.domain.channels import NamespaceOptions
from resonance_worker.living_settings import LivingSettings
from resonance_worker.settings import EngineKind, WorkerSettings
from resonance_worker.transport.app import create_app
from resonance_worker.transport.keys import NODE, POSITION_CHECKER
from resonance_worker.transport.positions import PositionChecker, install_position_check

from tests.harness.faults import FaultProxy, Ledger, LedgerSubscriber, api_publish
from tests.harness.processes import free_port
from tests.harness.redis import RedisServer
from tests.harness.worker import API_KEY, JWT_SECRET, WorkerProcess
from tests.worker.transport.conftest import Clients

pytestmark = pytest.mark.redis

StartWorker = Callable[..., WorkerProcess]
CHANNEL = "stream:quiet"
CHECK_S = 0.3
_prefixes = itertools.count()


def namespaces() -> dict[str, NamespaceOptions]:
    return {
        "stream": NamespaceOptions(
            history_size=100,
            history_ttl_seconds=600,
            force_recovery=True,
            force_positioning=True,
            allow_subscribe_for_client=True,
        ),
        "plain": NamespaceOptions(allow_subscribe_for_client=True),
        "opt": NamespaceOptions(
            history_size=10, history_ttl_seconds=600, allow_positioning=True, allow_subscribe_for_client=True
        ),
    }


class InProcessWorker:
    """The worker app served in this process; ``checker`` is None when the check is off."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self.node = self.app[NODE]
        self.checker = self.app.get(POSITION_CHECKER)
        # Stopping does not wait for connected clients to leave (a killed pod would not either).
        self.runner = web.AppRunner(self.app, shutdown_timeout=1.0)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.settings.port}/connection/websocket"

    async def start(self) -> InProcessWorker:
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.settings.port).start()
        return self

    async def stop(self) -> None:
        await self.runner.cleanup()


@pytest.fixture
async def quiet_setup(
    redis_server: RedisServer, start_worker: StartWorker
) -> AsyncIterator[tuple[FaultProxy, WorkerProcess, InProcessWorker, InProcessWorker]]:
    prefix = f"positions-{next(_prefixes)}"
    proxy = await FaultProxy(redis_server.port).start()
    publisher = start_worker(
        {
            "RESONANCE_ENGINE": "redis",
            "RESONANCE_REDIS_URL": redis_server.url,
            "RESONANCE_REDIS_PREFIX": prefix,
            "RESONANCE_NAMESPACES": json.dumps(
                {name: {"history_size": 10, "history_ttl_seconds": 600} for name in ("stream", "opt")}
            ),
            "RESONANCE_LIMITS__USER_PUBLISH_RATE": "0",
        },
        name="publisher",
    )

    def settings(name: str, check_s: float) -> WorkerSettings:
        return WorkerSettings(
            host="127.0.0.1",
            port=free_port(),
            node_name=name,
            engine=EngineKind.REDIS,
            redis_url=f"redis://127.0.0.1:{proxy.port}/0",
            redis_prefix=prefix,
            jwt_secret=JWT_SECRET,
            api_key=API_KEY,
            namespaces=namespaces(),
            living=LivingSettings(enabled=False),
            position_check_seconds=check_s,
        )

    checked = await InProcessWorker(settings("checked", CHECK_S)).start()
    unchecked = await InProcessWorker(settings("unchecked", 0)).start()
    assert unchecked.checker is None
    try:
        yield proxy, publisher, checked, unchecked
    finally:
        await checked.stop()
        await unchecked.stop()
        await proxy.close()


async def subscribe(clients: Clients, url: str, ledger: Ledger, name: str, publisher: WorkerProcess) -> None:
    client, _ = await clients.connected(url, publisher.token(name))
    sub = client.new_subscription(CHANNEL, events=LedgerSubscriber(ledger, name))
    await sub.subscribe()
    await sub.ready(timeout=10)


async def publish(publisher: WorkerProcess, ledger: Ledger, n: int) -> None:
    ledger.sent += 1
    assert await asyncio.to_thread(api_publish, publisher, CHANNEL, n)
    ledger.acked.append(n)


async def holds(ledger: Ledger, name: str, numbers: list[int], within_s: float = 20.0) -> bool:
    for _ in range(int(within_s / 0.05)):
        if ledger.received[name] == numbers:
            return True
        await asyncio.sleep(0.05)
    return False


async def test_a_gap_on_a_quiet_channel_is_found_and_recovered(
    quiet_setup: tuple[FaultProxy, WorkerProcess, InProcessWorker, InProcessWorker], clients: Clients
) -> None:
    proxy, publisher, checked, unchecked = quiet_setup
    ledger = Ledger()
    await subscribe(clients, checked.ws_url, ledger, "checked", publisher)
    await subscribe(clients, unchecked.ws_url, ledger, "unchecked", publisher)
    for n in (1, 2, 3):
        await publish(publisher, ledger, n)
    assert await holds(ledger, "checked", [1, 2, 3]) and await holds(ledger, "unchecked", [1, 2, 3])

    # Both workers lose Redis (pub/sub included) while the publisher, on Redis directly, publishes 4.
    proxy.cut()
    await publish(publisher, ledger, 4)
    await asyncio.sleep(3 * CHECK_S)  # checks run meanwhile and fail on the engine: skipped
    assert ledger.received["checked"] == [1, 2, 3]
    proxy.admit()

    # The channel stays quiet. The check finds the checked worker's client short of 4, twice:
    # insufficient state, a resubscription, and 4 recovered from history.
    assert await holds(ledger, "checked", [1, 2, 3, 4]), ledger.received
    assert ledger.recoveries["checked"] == [True]
    assert checked.checker is not None and checked.checker.lost == 1
    # The control: without the check, the same gap is still unnoticed well after that.
    await asyncio.sleep(5 * CHECK_S)
    assert ledger.received["unchecked"] == [1, 2, 3]
    assert ledger.recoveries["unchecked"] == []

    # The next publication shows the gap to the unchecked one too; everyone ends complete, once each.
    await publish(publisher, ledger, 5)
    assert await holds(ledger, "unchecked", [1, 2, 3, 4, 5]) and await holds(
        ledger, "checked", [1, 2, 3, 4, 5]
    )
    assert ledger.recoveries["unchecked"] == [True]
    assert ledger.summary()["lost_among_acknowledged"] == 0
    await asyncio.sleep(3 * CHECK_S)
    assert checked.checker.lost == 1  # a subscriber that is up to date is left alone


async def test_a_gap_left_by_a_pubsub_break_is_recovered_at_once_not_at_the_next_round(
    redis_server: RedisServer, start_worker: StartWorker, clients: Clients
) -> None:
    """The check's rounds are 10 minutes apart here, yet a subscriber whose worker lost Redis while
    the channel's last publication went out recovers within seconds: when the worker's pub/sub
    connection comes back, the check looks at once (and again a moment later), as after a
    Sentinel failover where the publishers are back on the new primary before this worker is."""
    prefix = f"positions-{next(_prefixes)}"
    proxy = await FaultProxy(redis_server.port).start()
    publisher = start_worker(
        {
            "RESONANCE_ENGINE": "redis",
            "RESONANCE_REDIS_URL": redis_server.url,
            "RESONANCE_REDIS_PREFIX": prefix,
            "RESONANCE_NAMESPACES": json.dumps({"stream": {"history_size": 10, "history_ttl_seconds": 600}}),
            "RESONANCE_LIMITS__USER_PUBLISH_RATE": "0",
        },
        name="resumed-publisher",
    )
    worker = await InProcessWorker(
        WorkerSettings(
            host="127.0.0.1",
            port=free_port(),
            engine=EngineKind.REDIS,
            redis_url=f"redis://127.0.0.1:{proxy.port}/0",
            redis_prefix=prefix,
            jwt_secret=JWT_SECRET,
            namespaces=namespaces(),
            living=LivingSettings(enabled=False),
            position_check_seconds=600,
        )
    ).start()
    try:
        ledger = Ledger()
        await subscribe(clients, worker.ws_url, ledger, "listener", publisher)
        for n in (1, 2):
            await publish(publisher, ledger, n)
        assert await holds(ledger, "listener", [1, 2])

        proxy.cut()
        await publish(publisher, ledger, 3)
        await asyncio.sleep(0.5)
        proxy.admit()

        assert await holds(ledger, "listener", [1, 2, 3], within_s=15.0), ledger.received
        assert ledger.recoveries["listener"] == [True]
        assert worker.checker is not None and worker.checker.lost == 1
    finally:
        await worker.stop()
        await proxy.close()


async def test_a_redis_that_lost_its_streams_is_told_on_a_quiet_channel(
    tmp_path: Path, start_worker: StartWorker, clients: Clients
) -> None:
    """Redis restarted without persistence while a channel is quiet: the position check finds the
    new epoch, the client resubscribes and is told ``recovered=false`` - without waiting for a
    publication that may never come."""
    redis = RedisServer(tmp_path / "volatile-redis").start()
    try:
        publisher = start_worker(
            {
                "RESONANCE_ENGINE": "redis",
                "RESONANCE_REDIS_URL": redis.url,
                "RESONANCE_NAMESPACES": json.dumps(
                    {"stream": {"history_size": 10, "history_ttl_seconds": 600}}
                ),
            },
            name="volatile-publisher",
        )
        worker = await InProcessWorker(
            WorkerSettings(
                host="127.0.0.1",
                port=free_port(),
                engine=EngineKind.REDIS,
                redis_url=redis.url,
                jwt_secret=JWT_SECRET,
                namespaces=namespaces(),
                living=LivingSettings(enabled=False),
                position_check_seconds=CHECK_S,
            )
        ).start()
        try:
            ledger = Ledger()
            await subscribe(clients, worker.ws_url, ledger, "listener", publisher)
            for n in (1, 2):
                await publish(publisher, ledger, n)
            assert await holds(ledger, "listener", [1, 2])

            await asyncio.to_thread(redis.restart)  # no AOF: the stream and its epoch are gone

            for _ in range(400):
                if ledger.recoveries["listener"]:
                    break
                await asyncio.sleep(0.05)
            assert ledger.recoveries["listener"] == [False]  # told honestly, nothing published since
            await publish(publisher, ledger, 3)
            assert await holds(ledger, "listener", [1, 2, 3])
        finally:
            await worker.stop()
    finally:
        redis.stop()


async def test_only_positioned_subscriptions_are_checked(
    quiet_setup: tuple[FaultProxy, WorkerProcess, InProcessWorker, InProcessWorker], clients: Clients
) -> None:
    _, publisher, checked, _ = quiet_setup
    assert checked.checker is not None
    client, _ = await clients.connected(checked.ws_url, publisher.token("reader"))
    for channel, positioned in (("plain:x", False), ("opt:x", True), ("opt:x", False)):
        if positioned:
            sub = client.new_subscription(channel, positioned=True)
        else:
            client, _ = await clients.connected(checked.ws_url, publisher.token("other"))
            sub = client.new_subscription(channel)
        await sub.subscribe()
        await sub.ready(timeout=10)
    assert len(checked.node.local_subs["opt:x"]) == 2 and "plain:x" in checked.node.local_subs
    assert await checked.checker.check_once() == 0  # the positioned one is at the top
    code, _ = await asyncio.to_thread(publisher.api, "publish", {"channel": "opt:x", "data": {"n": 1}})
    assert code == 200
    assert await checked.checker.check_once() == 0
    assert len(checked.checker.watch) <= 1  # at most the one positioned subscription, in flight
    with pytest.raises(ValueError, match="positive"):
        PositionChecker(checked.node, 0)


def test_the_check_runs_by_default_and_zero_turns_it_off() -> None:
    app = create_app(WorkerSettings(living=LivingSettings(enabled=False)))
    assert app[POSITION_CHECKER].interval_s == 20.0
    bare = web.Application()
    assert install_position_check(bare, app[NODE], 0) is None
    assert not bare.cleanup_ctx and POSITION_CHECKER not in bare
