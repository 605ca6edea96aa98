"""What clients and probes see when the engine fails, and start-up refusals."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import centrifuge
import pytest

from tests.harness.redis import RedisServer
from tests.harness.worker import WorkerProcess
from tests.worker.transport.conftest import Clients, SubRecorder
from tests.worker.transport.test_sdk import subscribed

StartWorker = Callable[..., WorkerProcess]


@pytest.mark.redis
async def test_redis_down_makes_ready_503_and_commands_fail_temporarily(
    tmp_path: Path, start_worker: StartWorker, clients: Clients
) -> None:
    redis = RedisServer(tmp_path / "own-redis").start()
    try:
        worker = start_worker({"RESONANCE_ENGINE": "redis", "RESONANCE_REDIS_URL": redis.url})
        client, _ = await clients.connected(worker.ws_url, worker.token("ops"))
        sub, _ = await subscribed(client, "chat:outage")
        redis.kill()
        status, body = await asyncio.to_thread(worker.http, "GET", "/ready")
        assert status == 503 and body["status"] == "unavailable"
        with pytest.raises(centrifuge.ReplyError) as error:
            await sub.publish("lost?")
        assert error.value.code == 100 and error.value.temporary
        with pytest.raises(centrifuge.ReplyError):
            await client.presence("chat:outage")
        with pytest.raises(centrifuge.ReplyError):
            await client.history("chat:outage", limit=1)
        status, body = await asyncio.to_thread(worker.api, "publish", {"channel": "chat:outage", "data": 1})
        assert status == 503
        failing = SubRecorder()
        other = client.new_subscription("chat:later", events=failing)
        await other.subscribe()
        error_ctx = await failing.wait_for("error")
        assert error_ctx.error.code == 100
        redis.process.start()  # same port: the worker reconnects by itself
        await other.ready(timeout=20)
        for _ in range(100):
            if (await asyncio.to_thread(worker.http, "GET", "/ready"))[0] == 200:
                break
            await asyncio.sleep(0.1)
        await sub.publish("after the outage")
    finally:
        redis.stop()


@pytest.mark.redis
async def test_a_client_sent_away_with_3010_comes_back_while_the_worker_sheds(
    tmp_path: Path, start_worker: StartWorker, clients: Clients
) -> None:
    """Redis restarts empty while the thyroid is overloaded by the outage: the position check sends
    the client away with 3010 (its personal channel's stream is gone) and the worker, still shedding
    new handshakes, lets exactly that client back in (a stranger is refused before and after)."""
    redis = RedisServer(tmp_path / "own-redis").start()
    try:
        # A low threshold: one failed engine call overloads the thyroid (it then holds for its dwell).
        # The thyroid's probe of Redis once a minute: it ran at start-up and does not run again within
        # the test, so nothing tells the thyroid Redis is back and its engine pain stays (with a probe
        # every second it would be dropped soon after Redis returns: the next test).
        worker = start_worker(
            {
                "RESONANCE_ENGINE": "redis",
                "RESONANCE_REDIS_URL": redis.url,
                "RESONANCE_LIVING__THYROID_THRESHOLD": "1",
                "RESONANCE_LIVING__THYROID_EVALUATE_SECONDS": "60",
                "RESONANCE_REDIS_FAILOVER_RETRY_SECONDS": "0",  # fail at once, not after 10 s of retries
            }
        )
        client, events = await clients.connected(worker.ws_url, worker.token("phone"))
        sub, _ = await subscribed(client, "chat:outage")
        redis.kill()
        with pytest.raises(centrifuge.ReplyError) as error:
            await sub.publish({"lost": True})
        assert error.value.code == 100  # the engine failed: pain
        for _ in range(100):
            if (await asyncio.to_thread(worker.http, "GET", "/connection/websocket"))[0] == 503:
                break
            await asyncio.sleep(0.1)
        assert (await asyncio.to_thread(worker.http, "GET", "/connection/websocket"))[0] == 503
        redis.process.start()  # empty: the personal channel's epoch changes
        await events.wait_code("connecting", 3010, timeout=20)
        await events.wait_for("connected", timeout=20)
        assert (await client.rpc("whoami", None)).data["user"] == "phone"
        status, body = await asyncio.to_thread(worker.http, "GET", "/connection/websocket")
        assert status == 503 and body["error"] == "overloaded"  # still shedding: its ticket was used
        assert "resonance_thyroid_readmitted_total 1.0" in worker.metrics()
    finally:
        redis.stop()


OUTAGE_S = 10.0
ADMIT_BOUND_S = 15.0
"""docs/living-core.md, "Dependency pain": after an outage the worker admits new handshakes this soon
(with the defaults it takes about the circuit's reset plus two probe periods, ≈ 4 s)."""


@pytest.mark.redis
async def test_after_a_10_s_redis_outage_the_worker_admits_new_clients_within_the_bound(
    tmp_path: Path, start_worker: StartWorker, clients: Clients
) -> None:
    """Clients retry into a 10 s outage as fast as they get errors (dozens of failed calls). Engine
    pain follows Redis's health, not that rate: while Redis is down it stays within one signal per probe
    window (still enough to overload this worker, threshold 5, while Redis is down), and once Redis is
    back the worker admits a new client within ADMIT_BOUND_S instead of after its 30 s dwell. (Every
    failed call used to be 3 pain: the worker shed new handshakes for minutes.)"""
    redis = RedisServer(tmp_path / "own-redis").start()
    try:
        worker = start_worker(
            {
                "RESONANCE_ENGINE": "redis",
                "RESONANCE_REDIS_URL": redis.url,
                "RESONANCE_REDIS_FAILOVER_RETRY_SECONDS": "0",  # errors at once: the fastest retry rate
                # Overloaded at 15: even Redis's health alone (≈ 3 per second of outage) sheds while it
                # is down, so the test shows the shedding end, not only never start.
                "RESONANCE_LIVING__THYROID_THRESHOLD": "5",
            }
        )
        client, _ = await clients.connected(worker.ws_url, worker.token("busy"))
        loop = asyncio.get_running_loop()
        redis.kill()
        outage_ends = loop.time() + OUTAGE_S
        failed = 0
        while loop.time() < outage_ends:
            results = await asyncio.gather(
                *(client.presence("chat:outage") for _ in range(10)), return_exceptions=True
            )
            failed += sum(isinstance(result, centrifuge.ReplyError) for result in results)
            await asyncio.sleep(0.02)
        _, during = await asyncio.to_thread(worker.http, "GET", "/thyroid/status")
        # Counting each in full (3) would have overloaded the worker (15) several times over...
        assert failed >= 15
        # ...but it is at most one signal (3) per 1 s probe window of the outage, plus the one before it.
        assert during["sources"]["engine_timeout"] <= 3.0 * (OUTAGE_S + 2)
        assert during["state"] == "overloaded"
        assert (await asyncio.to_thread(worker.http, "GET", "/connection/websocket"))[0] == 503
        redis.process.start()  # same port, empty
        back = loop.time()
        while True:  # admitting, and the engine's pain dropped when the probe found Redis back
            status, body = await asyncio.to_thread(worker.http, "GET", "/connection/websocket")
            _, thyroid = await asyncio.to_thread(worker.http, "GET", "/thyroid/status")
            if status != 503 and thyroid["sources"]["engine_timeout"] == 0.0:
                break
            assert loop.time() - back < ADMIT_BOUND_S, f"{ADMIT_BOUND_S:g} s after Redis: {body}, {thyroid}"
            await asyncio.sleep(0.2)
        newcomer, _ = await clients.connected(worker.ws_url, worker.token("newcomer"))
        assert (await newcomer.rpc("whoami", None)).data["user"] == "newcomer"
    finally:
        redis.stop()


def test_unusable_key_material_stops_start_up_with_a_message(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "resonance_worker"],
        env={"RESONANCE_PORT": "0", "RESONANCE_JWT_RSA_PUBLIC_KEY": "not a pem", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "JWT key" in result.stderr


def test_invalid_settings_stop_start_up(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "resonance_worker"],
        env={"RESONANCE_PORT": "-5", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "invalid settings" in result.stderr


async def test_jwks_url_that_fails_is_logged_and_hs256_still_works(
    start_worker: StartWorker, clients: Clients
) -> None:
    worker = start_worker({"RESONANCE_JWT_JWKS_URL": "http://127.0.0.1:9/nothing-here.json"})
    for _ in range(50):
        if any(r.get("msg") == "JWKS fetch failed" for r in worker.log_records()):
            break
        await asyncio.sleep(0.1)
    assert any(r.get("msg") == "JWKS fetch failed" for r in worker.log_records())
    client, _ = await clients.connected(worker.ws_url, worker.token("still-works"))
    assert (await client.rpc("whoami", None)).data["user"] == "still-works"


async def test_token_endpoint_refuses_bad_bodies(worker: WorkerProcess) -> None:
    headers = {"Content-Type": "application/json"}
    assert (await asyncio.to_thread(worker.http, "POST", "/token", "just a string", headers))[0] == 400
    assert (await asyncio.to_thread(worker.http, "POST", "/token", {"user": "u", "channels": "x"}))[0] == 400
    status, body = await asyncio.to_thread(
        worker.http, "POST", "/token", {"user": "u", "channels": ["chat:a"]}
    )
    assert status == 200 and body["token"]
