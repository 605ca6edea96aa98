"""Data rights on real processes (a worker, a real Redis, a real Neo4j, real SDK clients): consent
decides what is stored, ``user.export`` returns what was stored, ``user.erase`` removes it from
channel history, presence, the event log and the graph, and retention removes expired data from
all three stores."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import centrifuge
import neo4j
import pytest
import redis.asyncio as aioredis

from tests.harness.neo4j import Neo4jServer
from tests.harness.redis import RedisServer
from tests.harness.worker import WorkerProcess, api_call
from tests.worker.transport.conftest import Clients
from tests.worker.transport.test_living import ppg_batches
from tests.worker.transport.test_sdk import subscribed

pytestmark = [pytest.mark.redis, pytest.mark.neo4j]

StartWorker = Callable[..., WorkerProcess]
ALL = ["biometrics", "emotions", "graph"]


class Stores:
    """Direct looks into the three stores, bypassing the worker."""

    def __init__(self, redis_url: str, prefix: str, driver: neo4j.AsyncDriver) -> None:
        self.redis = aioredis.Redis.from_url(redis_url)
        self.prefix = prefix
        self.driver = driver

    async def events_of(self, user: str) -> list[dict[str, Any]]:
        found = []
        for _, fields in await self.redis.xrange(f"{self.prefix}.events"):
            event = json.loads(fields[b"e"])
            if user == event["subject"] or f'"{user}"' in json.dumps(event["payload"]):
                found.append(event)
        return found

    async def history_of(self, user: str) -> dict[str, int]:
        """Kept publications by stream key that mention ``user`` (publisher, channel or data)."""
        found: dict[str, int] = {}
        async for key in self.redis.scan_iter(match=f"{self.prefix}.stream.*"):
            if key.decode().endswith("#" + user):
                count = await self.redis.xlen(key)
            else:
                count = sum(1 for _, fields in await self.redis.xrange(key) if user.encode() in fields[b"d"])
            if count:
                found[key.decode()] = count
        return found

    async def graph_of(self, user: str) -> int:
        records, _, _ = await self.driver.execute_query(
            'MATCH (n) WHERE n.id = $user OR n["user_id"] = $user OR n["subject"] = $user '
            "RETURN count(n) AS n",
            user=user,
        )
        return int(records[0]["n"])

    async def close(self) -> None:
        await self.redis.aclose()


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.3)


@pytest.fixture
async def setup(
    neo4j_server: Neo4jServer,
    neo4j_driver: neo4j.AsyncDriver,
    redis_server: RedisServer,
    start_worker: StartWorker,
) -> Callable[..., Awaitable[tuple[WorkerProcess, Stores]]]:
    made: list[Stores] = []

    async def make(**env: str) -> tuple[WorkerProcess, Stores]:
        prefix = f"rights-{uuid.uuid4().hex[:8]}"
        worker = start_worker(
            {
                "RESONANCE_ENGINE": "redis",
                "RESONANCE_REDIS_URL": redis_server.url,
                "RESONANCE_REDIS_PREFIX": prefix,
                "RESONANCE_NEO4J__URI": neo4j_server.uri,
                "RESONANCE_NEO4J__USER": neo4j_server.user,
                "RESONANCE_NEO4J__PASSWORD": neo4j_server.password,
                "RESONANCE_DATA__CONSENT_REQUIRED": "true",
                **env,
            }
        )
        stores = Stores(redis_server.url, prefix, neo4j_driver)
        made.append(stores)
        return worker, stores

    yield make
    for stores in made:
        await stores.close()


async def live_a_little(client: centrifuge.Client, user: str, room: str) -> None:
    """Reports two states, joins a room, pushes PPG and publishes in a chat."""
    await client.rpc("room.join", {"room": room})
    for valence in (0.4, -0.2):
        await client.rpc("state.report", {"valence": valence, "arousal": 0.6, "label": f"{user} feeling"})
    for batch in ppg_batches(7):
        await client.rpc("bio.push", batch)
    chat, _ = await subscribed(client, f"chat:{room}")
    await chat.publish({"text": f"hello from {user}"})


async def test_without_consent_nothing_of_that_kind_is_stored(
    setup: Callable[..., Awaitable[tuple[WorkerProcess, Stores]]], clients: Clients
) -> None:
    worker, stores = await setup()
    partial, _ = await clients.connected(worker.ws_url, worker.token("pia", consent=["emotions"]))
    none, _ = await clients.connected(worker.ws_url, worker.token("nils"))
    full, _ = await clients.connected(worker.ws_url, worker.token("fay", consent=ALL))
    for client, user in ((partial, "pia"), (none, "nils"), (full, "fay")):
        await live_a_little(client, user, "consent")

    async def fay_projected() -> bool:
        return await stores.graph_of("fay") > 0

    await eventually(fay_projected, "fay's states in the graph")
    # Full consent: everything kept. The projector has caught up to fay's events, and pia's came first.
    assert [e for e in await stores.events_of("fay") if e["type"] == "state_changed"]
    assert f"{stores.prefix}.stream.bio:#fay" in await stores.history_of("fay")
    # Emotions only: states logged (not projected), no biometric history.
    assert len([e for e in await stores.events_of("pia") if e["type"] == "state_changed"]) == 2
    assert f"{stores.prefix}.stream.bio:#pia" not in await stores.history_of("pia")
    assert await stores.graph_of("pia") == 0
    # No claim: no state, no question, no biometric history, nothing in the graph; live features still ran.
    assert not [e for e in await stores.events_of("nils") if e["type"] in ("state_changed", "question_asked")]
    assert f"{stores.prefix}.stream.bio:#nils" not in await stores.history_of("nils")
    assert await stores.graph_of("nils") == 0
    assert (await none.rpc("state.get", {})).data  # the live state is there
    # An unknown kind makes the token invalid.
    bad, recorder = clients.new(worker.ws_url, worker.token("ivo", consent=["everything"]))
    await bad.connect()
    assert (await recorder.wait_for("disconnected")).code == 3500


async def test_export_then_erase_leaves_nothing_of_the_person(
    setup: Callable[..., Awaitable[tuple[WorkerProcess, Stores]]], clients: Clients
) -> None:
    worker, stores = await setup()
    gus, _ = await clients.connected(worker.ws_url, worker.token("gus", consent=ALL))
    hal, _ = await clients.connected(worker.ws_url, worker.token("hal", consent=ALL))
    await live_a_little(gus, "gus", "pair")
    await live_a_little(hal, "hal", "pair")

    async def both_projected() -> bool:
        return await stores.graph_of("gus") > 0 and await stores.graph_of("hal") > 0

    await eventually(both_projected, "both in the graph")
    status, body = await api_call(worker, "user.export", {"user": "gus"})
    assert status == 200, body
    exported = body["result"]
    assert exported["user"] == "gus"
    assert [p["data"] for p in exported["channels"]["chat:pair"]] == [{"text": "hello from gus"}]
    assert exported["channels"]["bio:#gus"]
    assert {
        s["state"]["label"]
        for s in [e["payload"] for e in exported["events"] if e["type"] == "state_changed"]
    } == {"gus feeling"}
    assert [s["valence"] for s in exported["graph"]["states"]] == [0.4, -0.2]
    assert any(channel.endswith("pair") for channel in exported["presence"])
    hal_before = await stores.history_of("hal")

    status, body = await api_call(worker, "user.erase", {"user": "gus"})
    assert status == 200, body
    removed = body["result"]["removed"]
    assert removed["publications"] >= 2 and removed["events"] >= 3 and removed["graph"]["states"] == 2

    status, body = await api_call(worker, "user.export", {"user": "gus"})
    assert status == 200
    after = body["result"]
    assert after["channels"] == {} and after["presence"] == {} and after["events"] == []
    assert after["graph"] == {"states": [], "questions": [], "relations": []}
    assert await stores.events_of("gus") == []
    assert await stores.history_of("gus") == {}
    assert await stores.graph_of("gus") == 0
    # The other person keeps their own data (the room's shared results naming gus went with him).
    assert await stores.graph_of("hal") > 0
    assert {k: v for k, v in (await stores.history_of("hal")).items() if "bio" in k} == {
        k: v for k, v in hal_before.items() if "bio" in k
    }
    # Both calls were audited.
    audited = [
        r for r in worker.log_records() if r.get("audit") and r.get("action", "").startswith("api.user.")
    ]
    assert [(r["action"], r["user"], r["status"]) for r in audited] == [
        ("api.user.export", "gus", 200),
        ("api.user.erase", "gus", 200),
        ("api.user.export", "gus", 200),
    ]
    status, body = await api_call(worker, "user.erase", {})
    assert status == 400 and "user" in body["error"]["message"]


async def test_retention_removes_expired_data_from_all_three_stores(
    setup: Callable[..., Awaitable[tuple[WorkerProcess, Stores]]], clients: Clients
) -> None:
    worker, stores = await setup(
        RESONANCE_DATA__RETENTION_BIOMETRICS_SECONDS="6",
        RESONANCE_DATA__RETENTION_EMOTIONS_SECONDS="6",
        RESONANCE_DATA__RETENTION_GRAPH_SECONDS="6",
        RESONANCE_DATA__RETENTION_CHECK_SECONDS="1",
    )
    rex, _ = await clients.connected(worker.ws_url, worker.token("rex", consent=ALL))
    await live_a_little(rex, "rex", "brief")

    async def stored() -> bool:
        history = await stores.history_of("rex")
        return (
            await stores.graph_of("rex") > 0
            and bool(await stores.events_of("rex"))
            and f"{stores.prefix}.stream.bio:#rex" in history
        )

    await eventually(stored, "rex's data in all three stores", timeout=6)

    async def expired() -> bool:
        states = [e for e in await stores.events_of("rex") if e["type"] == "state_changed"]
        bio = (await stores.history_of("rex")).get(f"{stores.prefix}.stream.bio:#rex", 0)
        records, _, _ = await stores.driver.execute_query(
            "MATCH (s:State {user_id: 'rex'}) RETURN count(s) AS n"
        )
        return not states and not bio and records[0]["n"] == 0

    await eventually(expired, "rex's states, readings and graph states expired", timeout=20)
