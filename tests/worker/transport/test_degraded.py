"""Degraded mode on a real worker: Redis killed, the pod is not ready, yet its
own subscribed SDK clients keep exchanging publications (local fan-out, no
history); a new channel is refused as temporary. Redis back: normal service."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import centrifuge
import pytest

from tests.harness.redis import RedisServer
from tests.harness.worker import WorkerProcess
from tests.worker.transport.conftest import Clients, SubRecorder
from tests.worker.transport.test_sdk import subscribed

pytestmark = pytest.mark.redis


async def test_degraded_mode_keeps_local_clients_talking_while_redis_is_away(
    tmp_path: Path, start_worker: Callable[..., WorkerProcess], clients: Clients
) -> None:
    redis = RedisServer(tmp_path / "degraded-redis").start()
    try:
        worker = start_worker(
            {
                "RESONANCE_ENGINE": "redis",
                "RESONANCE_REDIS_URL": redis.url,
                "RESONANCE_DEGRADED_LOCAL_FANOUT": "true",
                "RESONANCE_LIMITS__USER_PUBLISH_RATE": "1",  # shared bucket: skipped while degraded
            },
            name="degraded",
        )
        talker, _ = await clients.connected(worker.ws_url, worker.token("talker"))
        listener, _ = await clients.connected(worker.ws_url, worker.token("listener"))
        talk, _ = await subscribed(talker, "chat:local")
        _, heard = await subscribed(listener, "chat:local")
        await talk.publish({"before": 1})
        assert (await heard.wait_for("publication")).pub.data == {"before": 1}

        redis.kill()
        status, body = await asyncio.to_thread(worker.http, "GET", "/ready")
        assert status == 503 and body["status"] == "unavailable"  # no new clients routed here
        for n in range(3):
            await talk.publish({"during": n})  # acknowledged: fanned out on this pod
        got = [(await heard.wait_for("publication")).pub for _ in range(3)]
        assert [p.data for p in got] == [{"during": 0}, {"during": 1}, {"during": 2}]
        assert all(p.offset == 0 for p in got)  # not stored: no position, no recovery
        status, body = await asyncio.to_thread(
            worker.api, "publish", {"channel": "chat:local", "data": {"api": 1}}
        )
        assert status == 200 and body["result"] == {"offset": 0, "epoch": ""}
        assert (await heard.wait_for("publication")).pub.data == {"api": 1}
        with pytest.raises(centrifuge.ReplyError) as error:
            await listener.history("chat:local", limit=10)
        assert error.value.code == 100
        refused = SubRecorder()
        fresh = listener.new_subscription("chat:elsewhere", events=refused)
        await fresh.subscribe()
        assert (await refused.wait_for("error")).error.code == 100

        redis.process.start()  # same port, empty: the worker reconnects by itself
        for _ in range(200):
            if (await asyncio.to_thread(worker.http, "GET", "/ready"))[0] == 200:
                break
            await asyncio.sleep(0.1)
        status, body = await asyncio.to_thread(
            worker.api, "publish", {"channel": "chat:local", "data": {"after": 1}}
        )
        assert status == 200 and body["result"]["offset"] >= 1  # stored again
        records = [r for r in worker.log_records() if "fanned out to this node only" in r.get("msg", "")]
        assert len(records) >= 4
    finally:
        redis.stop()
