"""A person survives a move between workers (issue 15): their biometric baseline, the self-reports behind
self-understanding and the body samples they pair with live in Redis (``living/person.py``), so a person
whose worker drains continues on another one instead of starting over. Real workers, a real Redis."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

from tests.harness.redis import RedisServer
from tests.worker.transport.conftest import Clients
from tests.worker.transport.test_limits import StartWorker
from tests.worker.transport.test_living import next_data, ppg_batches, subscribe


def stored_baseline(redis_server: RedisServer, prefix: str, user: str) -> dict[str, Any]:
    import redis

    client = redis.Redis.from_url(redis_server.url)
    try:
        raw = client.get(f"{prefix}.{{u:{user}}}.person.baseline")
        ttl = client.ttl(f"{prefix}.{{u:{user}}}.person.baseline")
    finally:
        client.close()
    assert raw is not None and ttl > 0  # kept with an explicit TTL
    body: dict[str, Any] = json.loads(raw)
    return body


async def test_baseline_and_self_understanding_continue_on_another_worker(
    redis_server: RedisServer, start_worker: StartWorker, clients: Clients
) -> None:
    prefix = f"moves-{secrets.token_hex(4)}"
    env = {
        "RESONANCE_ENGINE": "redis",
        "RESONANCE_REDIS_URL": redis_server.url,
        "RESONANCE_REDIS_PREFIX": prefix,
    }
    first, second = start_worker(env, name="moves-a"), start_worker(env, name="moves-b")
    batches = ppg_batches(175)

    # On the first worker: 100 s of PPG (the baseline becomes ready, arousal readings follow), and two
    # sessions of self-reports beside them.
    streaming, _ = await clients.connected(first.ws_url, first.token("pia"))
    assert (await streaming.rpc("room.join", {"room": "duo"})).data["members"] == ["pia"]
    arousal: list[dict[str, Any]] = []
    for batch in batches[:100]:
        readings = (await streaming.rpc("bio.push", batch)).data["readings"]
        arousal += [r for r in readings if r["kind"] == "arousal"]
    assert any(r["baseline_ready"] for r in arousal), arousal[-3:]
    other_session, _ = await clients.connected(first.ws_url, first.token("pia"))
    for session, reports in ((streaming, (0.7, 0.6, 0.8)), (other_session, (0.3, 0.4, 0.5))):
        for value in reports:
            await session.rpc("state.report", {"valence": 0.2, "arousal": value})
    before = (await streaming.rpc("self.reflect", {})).data
    assert before["self_understanding"]["sessions"] == 2 and before["self_understanding"]["pairs"] == 6
    baseline_before = stored_baseline(redis_server, prefix, "pia")
    hr_before = baseline_before["stats"]["hr"][0]
    assert baseline_before["frozen"] or hr_before >= 60

    # The first worker drains away (SIGTERM); the person comes back on the second.
    first.stop()
    await clients.close()
    clients.clients.clear()
    moved, _ = await clients.connected(second.ws_url, second.token("pia"))
    room = await subscribe(moved, "room:duo")  # what the SDK's resubscribe does after a reconnect
    after = (await moved.rpc("self.reflect", {})).data
    assert after["self_understanding"] == before["self_understanding"]
    assert after["home"] == before["home"]
    # The stream continues from the stored baseline: arousal at once (no new baseline to wait for), and
    # the baseline keeps its history (a frozen one stays as it was, a learning one keeps counting).
    readings = []
    for batch in batches[100:]:
        readings += (await moved.rpc("bio.push", batch)).data["readings"]
    moved_arousal = [r for r in readings if r["kind"] == "arousal"]
    assert moved_arousal and all(r["baseline_ready"] for r in moved_arousal), moved_arousal[:2]
    baseline_after = stored_baseline(redis_server, prefix, "pia")
    assert baseline_after["stats"]["hr"][0] >= hr_before
    # A third session, on the new worker, adds to the same self-understanding.
    for value in (0.6, 0.7):
        await moved.rpc("state.report", {"valence": 0.2, "arousal": value})
    # Still in the room: the first living call of the new connection put it back, so its states reach
    # the room (a worker shares a state only in the rooms the person is in there).
    shared = await next_data(room, lambda d: d["type"] == "state" and d["user"] == "pia")
    assert shared["state"]["arousal"] > 0
    assert (await moved.rpc("self.reflect", {})).data["self_understanding"]["sessions"] == 3
    await asyncio.sleep(0)
