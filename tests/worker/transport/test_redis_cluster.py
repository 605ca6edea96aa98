"""Two worker processes on one real Redis behave as one server, driven by
real SDK clients."""

from __future__ import annotations

from collections.abc import Callable

import centrifuge
import pytest

from tests.harness.redis import RedisServer
from tests.harness.worker import WorkerProcess, api_call
from tests.worker.transport.conftest import Clients, SubRecorder
from tests.worker.transport.test_sdk import subscribed

pytestmark = pytest.mark.redis

StartWorker = Callable[..., WorkerProcess]


@pytest.fixture
def pair(redis_server: RedisServer, start_worker: StartWorker) -> tuple[WorkerProcess, WorkerProcess]:
    import uuid

    env = {
        "RESONANCE_ENGINE": "redis",
        "RESONANCE_REDIS_URL": redis_server.url,
        "RESONANCE_REDIS_PREFIX": f"test-{uuid.uuid4().hex[:8]}",
    }
    return start_worker(env, name="worker-a"), start_worker(env, name="worker-b")


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


async def test_user_publish_rate_is_shared_by_both_workers(
    redis_server: RedisServer, start_worker: StartWorker, clients: Clients
) -> None:
    import uuid

    env = {
        "RESONANCE_ENGINE": "redis",
        "RESONANCE_REDIS_URL": redis_server.url,
        "RESONANCE_REDIS_PREFIX": f"rate-{uuid.uuid4().hex[:8]}",
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
