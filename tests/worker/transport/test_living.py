"""The living core on real worker processes with real centrifuge-python clients:
pain → insight → decay, shedding, state reports, room resonance, biometric streams."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import Callable
from typing import Any

import centrifuge
import numpy as np
import pytest

from bench.biometrics import synthetic
from tests.harness.redis import RedisServer
from tests.harness.worker import WorkerProcess
from tests.worker.transport.conftest import Clients, SubRecorder

StartWorker = Callable[..., WorkerProcess]

FAST_THYROID = {
    "RESONANCE_LIVING__THYROID_THRESHOLD": "3",
    "RESONANCE_LIVING__THYROID_HALF_LIFE_SECONDS": "1",
    "RESONANCE_LIVING__THYROID_MIN_DWELL_SECONDS": "0.5",
    "RESONANCE_LIVING__THYROID_EVALUATE_SECONDS": "0.1",
}
# One client address adds at most a quarter of the threshold to the pain (0.75 here), so the
# tests that must hurt the worker come from several addresses: the test's loopback connections
# pass through as a trusted proxy that names the client in X-Forwarded-For.
BEHIND_PROXY = {
    "RESONANCE_CLIENT_IP_HEADER": "X-Forwarded-For",
    "RESONANCE_TRUSTED_PROXIES": '["127.0.0.1/32"]',
}


async def from_addresses(
    clients: Clients, worker: WorkerProcess, count: int, user: str = "clumsy"
) -> list[centrifuge.Client]:
    """``count`` connected clients, each from its own (forwarded) address."""
    made = []
    for n in range(count):
        headers = {"X-Forwarded-For": f"198.51.100.{n + 1}"}
        client, _ = await clients.connected(worker.ws_url, worker.token(f"{user}-{n}"), headers=headers)
        made.append(client)
    return made


async def subscribe(client: centrifuge.Client, channel: str) -> SubRecorder:
    events = SubRecorder()
    sub = client.new_subscription(channel, events=events)
    await sub.subscribe()
    await events.wait_for("subscribed")
    return events


async def next_data(events: SubRecorder, accept: Callable[[Any], bool], timeout: float = 15.0) -> Any:
    """The data of the next publication ``accept`` likes."""

    async def until() -> Any:
        while True:
            ctx = await events.wait_for("publication", timeout)
            if accept(ctx.pub.data):
                return ctx.pub.data

    return await asyncio.wait_for(until(), timeout)


async def status(worker: WorkerProcess) -> dict[str, Any]:
    code, body = await asyncio.to_thread(worker.http, "GET", "/thyroid/status")
    assert code == 200
    assert isinstance(body, dict)
    return body


async def test_thyroid_status_shape_and_metrics(start_worker: StartWorker) -> None:
    worker = start_worker()
    body = await status(worker)
    assert set(body) == {"pain", "threshold", "overload_factor", "state", "sources", "insights", "updated_at"}
    assert body["state"] == "calm" and body["pain"] == 0 and body["threshold"] == 10.0
    assert set(body["sources"]) == {
        "protocol_error",
        "limit_hit",
        "auth_failure",
        "engine_timeout",
        "neo4j_failure",
        "server_error",
        "disconnect_storm",
    }
    assert body["insights"] == []
    metrics = await asyncio.to_thread(worker.metrics)
    assert "resonance_thyroid_pain 0.0" in metrics
    assert 'resonance_thyroid_state{state="calm"} 1.0' in metrics


async def test_errors_raise_pain_release_an_insight_then_decay(
    start_worker: StartWorker, clients: Clients
) -> None:
    worker = start_worker({**FAST_THYROID, **BEHIND_PROXY})
    watcher, _ = await clients.connected(worker.ws_url, worker.token("ops"))
    system = await subscribe(watcher, "system:thyroid")
    clumsy = await from_addresses(clients, worker, 6)
    for client in clumsy:
        for _ in range(2):  # each refused RPC is a protocol error (severity 1, 0.75 per address counts)
            with pytest.raises(centrifuge.ReplyError) as error:
                await client.rpc("no.such.method", None)
            assert error.value.code == 104
    pushed = await next_data(system, lambda data: data["state"] != "calm")
    assert pushed["pain"] >= 3 and pushed["sources"]["protocol_error"] > 0
    insight = pushed["insights"][0]
    assert insight["top_source"] == "protocol_error" and insight["top_share"] == 1.0
    assert insight["suggested_action"] and "protocol_error" in insight["summary"]
    body = await status(worker)
    assert body["insights"][0]["top_source"] == "protocol_error"
    metrics = await asyncio.to_thread(worker.metrics)
    assert re.search(r"^resonance_thyroid_pain [1-9]", metrics, re.M)
    # Half-life 1 s: the pain fades, and the thyroid relaxes (the insight stays in the history).
    calm = await next_data(system, lambda data: data["state"] == "calm" and data["pain"] < 1.8)
    assert calm["insights"] and calm["insights"][0]["top_source"] == "protocol_error"
    assert all([await client.rpc("echo", 1) for client in clumsy])  # nobody was cut off


async def test_overload_sheds_new_connections_with_a_retry_hint(
    start_worker: StartWorker, clients: Clients
) -> None:
    worker = start_worker(
        {
            **FAST_THYROID,
            **BEHIND_PROXY,
            "RESONANCE_LIVING__THYROID_HALF_LIFE_SECONDS": "3",
            "RESONANCE_LIVING__THYROID_IDENTITY_SHARE": "1",  # 3 per address, flooding at 12
        }
    )
    noisy = await from_addresses(clients, worker, 5, user="noisy")
    for client in noisy:
        for _ in range(3):  # pain up to 15 ≥ 3 × 3: overloaded
            with pytest.raises(centrifuge.ReplyError):
                await client.rpc("nope", None)

    def shed() -> tuple[int, Any, str | None]:
        import urllib.error
        import urllib.request

        try:
            urllib.request.urlopen(worker.base_url + "/connection/websocket", timeout=5)
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read()), exc.headers.get("Retry-After")
        return 200, None, None

    code, body, retry_after = await asyncio.to_thread(shed)
    assert code == 503 and body["error"] == "overloaded"
    assert retry_after is not None and int(retry_after) >= 1 and body["retry_after"] > 0
    assert (await status(worker))["state"] == "overloaded"
    metrics = await asyncio.to_thread(worker.metrics)
    assert 'resonance_thyroid_state{state="overloaded"} 1.0' in metrics
    # The connected clients stay; the refusals counted as limit-free protocol pain only.
    assert (await noisy[0].rpc("echo", "still here")).data == "still here"


async def test_state_report_validates_smooths_and_is_replayable(
    start_worker: StartWorker, clients: Clients
) -> None:
    worker = start_worker()
    client, _ = await clients.connected(worker.ws_url, worker.token("rita"))
    reply = await client.rpc("state.report", {"valence": 0.5, "arousal": 0.2, "label": "calm"})
    state = reply.data["state"]
    assert state["valence"] == 0.5 and state["arousal"] == 0.2 and state["label"] == "calm"
    assert state["source"] == "self_report"
    reply = await client.rpc("state.report", {"valence": -0.5, "arousal": 0.2})
    assert -0.5 < reply.data["state"]["valence"] < 0.5  # smoothed, not the last report
    bad = [
        ({"valence": 2, "arousal": 0.2}, "valence: must be between -1 and 1, got 2"),
        ({"valence": 0.1}, "arousal: is required"),
        ({"valence": 0.1, "arousal": 0.1, "mood": "x"}, "mood: unknown field"),
        ("calm", "report: must be a JSON object"),
        ({"valence": 0.1, "arousal": 0.1, "source": "psychic"}, "source: must be one of"),
    ]
    for data, message in bad:
        with pytest.raises(centrifuge.ReplyError) as error:
            await client.rpc("state.report", data)
        assert error.value.code == 107 and error.value.message.startswith(message)
    current = (await client.rpc("state.get", None)).data
    assert current["self_report"]["weight"] > 1 and current["biometric"] is None
    replayed = (await client.rpc("events.replay", {"types": ["state_changed"]})).data["events"]
    assert [e["payload"]["state"]["valence"] for e in replayed] == [0.5, -0.5]
    assert all(e["subject"] == "rita" for e in replayed)
    with pytest.raises(centrifuge.ReplyError) as error:
        await client.rpc("events.replay", {"types": ["nonsense"]})
    assert error.value.code == 107
    reflection = (await client.rpc("self.reflect", None)).data
    assert reflection["home"]["pairs"] == 0  # no body readings yet: nothing to compare the reports with
    assert reflection["harmony"]["states"] == 2
    thyroid = (await client.rpc("thyroid.status", None)).data
    assert thyroid["sources"]["protocol_error"] > 0  # the refused reports hurt a little


async def test_room_resonance_rises_when_states_converge(start_worker: StartWorker, clients: Clients) -> None:
    worker = start_worker(
        {
            "RESONANCE_LIVING__ROOM_TICK_SECONDS": "0.2",
            "RESONANCE_LIVING__ROOM_CADENCE_SECONDS": "2",
            "RESONANCE_LIVING__STATE_HALF_LIFE_SECONDS": "0.2",
        }
    )
    alice, _ = await clients.connected(worker.ws_url, worker.token("alice"))
    bob, _ = await clients.connected(worker.ws_url, worker.token("bob"))
    joined = (await alice.rpc("room.join", {"room": "duo"})).data
    assert joined == {"channel": "room:duo", "members": ["alice"]}
    assert (await bob.rpc("room.join", {"room": "duo"})).data["members"] == ["alice", "bob"]
    alice_room = await subscribe(alice, "room:duo")
    bob_room = await subscribe(bob, "room:duo")
    await alice.rpc("state.report", {"valence": 0.9, "arousal": 0.9})
    await bob.rpc("state.report", {"valence": -0.9, "arousal": 0.1})
    shared = await next_data(bob_room, lambda d: d["type"] == "state" and d["user"] == "alice")
    assert shared["state"]["valence"] == 0.9
    apart = await next_data(
        alice_room, lambda d: d["type"] == "resonance" and d["members"] == 2 and d["agreement"] < 0.5
    )
    assert (
        apart["room_id"] == "duo" and apart["score"] == apart["agreement"]
    )  # no heart rates: agreement only
    await asyncio.sleep(1.2)  # bob's old report fades (half-life 0.2 s)
    await bob.rpc("state.report", {"valence": 0.9, "arousal": 0.9})
    close = await next_data(alice_room, lambda d: d["type"] == "resonance" and d["agreement"] > 0.9)
    assert close["score"] > apart["score"] + 0.4
    seen_by_bob = await next_data(bob_room, lambda d: d["type"] == "resonance" and d["agreement"] > 0.9)
    assert seen_by_bob["score"] == pytest.approx(close["score"], abs=0.1)
    with pytest.raises(centrifuge.ReplyError) as error:
        await alice.rpc("room.join", {"room": "no spaces!"})
    assert error.value.code == 107
    assert (await bob.rpc("room.leave", {"room": "duo"})).data == {"left": "duo"}
    with pytest.raises(centrifuge.ReplyError) as error:
        await bob.rpc("room.leave", {"room": "duo"})
    assert error.value.code == 107 and "not a member" in error.value.message
    events = (await alice.rpc("events.replay", {"types": ["state_changed"]})).data["events"]
    assert {e["subject"] for e in events} == {"alice"}


def ppg_batches(seconds: int, hr_bpm: float = 72.0) -> list[dict[str, Any]]:
    """One-second batches of a synthetic 30 Hz finger PPG with known heart rate."""
    beats = synthetic.beat_times(seconds + 2, hr_bpm=hr_bpm)
    t = synthetic.frame_times(seconds, jitter=0.1)
    values = synthetic.pulse_at(t, beats)
    batches = []
    for second in range(seconds):
        inside = (t >= second) & (t < second + 1)
        batches.append({"kind": "ppg", "t": t[inside].tolist(), "values": values[inside].tolist()})
    return batches


async def test_biometric_stream_gives_heart_rate_on_the_channel(
    start_worker: StartWorker, clients: Clients
) -> None:
    worker = start_worker()
    client, _ = await clients.connected(worker.ws_url, worker.token("bea"))
    channel = await subscribe(client, "bio:#bea")
    replies = []
    for batch in ppg_batches(14):
        replies.append((await client.rpc("bio.push", batch)).data)
    assert all(reply["channel"] == "bio:#bea" for reply in replies)
    rates = [r["bpm"] for reply in replies for r in reply["readings"] if r["kind"] == "heart_rate"]
    assert len(rates) >= 5 and all(r is not None for r in rates)
    assert np.mean(rates) == pytest.approx(72.0, abs=5.0)
    published = await next_data(channel, lambda d: d["kind"] == "heart_rate")
    assert published["bpm"] == pytest.approx(72.0, abs=6.0) and 0 < published["quality"] <= 1
    metrics = await asyncio.to_thread(worker.metrics)
    assert re.search(r"^resonance_bio_update_seconds_count [1-9]", metrics, re.M)
    # Only bea may read bea's readings; nobody may publish on the system channel.
    eve, _ = await clients.connected(worker.ws_url, worker.token("eve"))
    denied = SubRecorder()
    eve.new_subscription("bio:#bea", events=denied)
    await eve.get_subscription("bio:#bea").subscribe()  # type: ignore[union-attr]
    assert (await denied.wait_for("unsubscribed")).code == 103
    with pytest.raises(centrifuge.ReplyError) as error:
        await eve.publish("system:thyroid", {"state": "calm"})
    assert error.value.code == 103


async def test_bad_biometric_batches_get_clear_errors(start_worker: StartWorker, clients: Clients) -> None:
    worker = start_worker()
    client, _ = await clients.connected(worker.ws_url, worker.token("bo"))
    good = ppg_batches(2)
    await client.rpc("bio.push", good[1])
    cases = [
        (good[0], "not after the previous sample"),  # earlier than what the stream already has
        ({"kind": "ppg", "t": [1, 2], "values": [1]}, "t and values must have the same length"),
        ({"kind": "eeg", "t": [1], "values": [1]}, "kind must be"),
        ({"kind": "ppg", "t": "soon", "values": [1]}, "t must be a non-empty list"),
        ({"kind": "ppg", "t": [1, "x"], "values": [1, 2]}, "t must hold only numbers"),
        ({"kind": "rgb", "t": [3, 3.1], "values": [1, 2]}, "values must be a list of rows of 3 numbers"),
        ({"kind": "ppg", "t": list(range(5000)), "values": [0] * 5000}, "t: at most 4096"),
        ({"kind": "ppg", "t": [5], "values": [1], "extra": 1}, "extra: unknown field"),
        ([1, 2], "bio.push takes a JSON object"),
        ({"kind": "ppg", "t": [5], "values": [1], "region": "toe"}, "region must be"),
        ({"kind": "ppg", "t": [5], "values": [1], "motion": {"t": [5], "accel": [1]}}, "motion.accel must"),
        ({"kind": "ppg", "t": [5], "values": [1], "motion": 3}, "motion must be an object"),
    ]
    for data, message in cases:
        with pytest.raises(centrifuge.ReplyError) as error:
            await client.rpc("bio.push", data)
        assert error.value.code == 107, data
        assert message in error.value.message, (message, error.value.message)
    # Missing values (null) are gaps, not errors; the stream carries on after every refusal.
    gap = {"kind": "ppg", "t": [2.0 + i / 30 for i in range(30)], "values": [None] * 30}
    assert (await client.rpc("bio.push", gap)).data["readings"] == []
    motion = {"t": gap["t"], "accel": [[0, 0, 9.8]] * 30}
    later: dict[str, Any] = {
        "kind": "ppg",
        "t": [3.0 + i / 30 for i in range(30)],
        "values": [0.5] * 30,
        "motion": motion,
    }
    with pytest.raises(centrifuge.ReplyError):  # motion timestamps must also move forward… here they do not
        await client.rpc("bio.push", {**later, "motion": {**motion, "t": [1.0] * 30}})
    assert (await client.rpc("bio.stop", None)).data == {"stopped": True}
    assert (await client.rpc("bio.stop", None)).data == {"stopped": False}


@pytest.mark.redis
async def test_pain_is_shared_across_workers_through_redis(
    redis_server: RedisServer, start_worker: StartWorker, clients: Clients
) -> None:
    env = {
        "RESONANCE_ENGINE": "redis",
        "RESONANCE_REDIS_URL": redis_server.url,
        "RESONANCE_REDIS_PREFIX": "living-pain",
        **FAST_THYROID,
        **BEHIND_PROXY,
        "RESONANCE_LIVING__THYROID_HALF_LIFE_SECONDS": "30",
    }
    hurt = start_worker(env, name="worker-hurt")
    calm = start_worker(env, name="worker-calm")
    for client in await from_addresses(clients, hurt, 8):  # 8 × 0.75 = 6
        with pytest.raises(centrifuge.ReplyError):
            await client.rpc("nope", None)

    async def felt_by_the_other() -> dict[str, Any]:
        while True:
            body = await status(calm)
            if body["sources"]["protocol_error"] >= 4:
                return body
            await asyncio.sleep(0.1)

    body = await asyncio.wait_for(felt_by_the_other(), 15)
    assert body["state"] == "stressed"  # the other worker never saw an error itself
    assert body["insights"][0]["top_source"] == "protocol_error"


@pytest.mark.redis
async def test_degraded_mode_keeps_the_redis_event_log(
    redis_server: RedisServer, redis_client: Any, start_worker: StartWorker, clients: Clients
) -> None:
    """Degraded local fan-out wraps the Redis engine; the living core still logs to the Redis Stream."""
    worker = start_worker(
        {
            "RESONANCE_ENGINE": "redis",
            "RESONANCE_REDIS_URL": redis_server.url,
            "RESONANCE_REDIS_PREFIX": "living-degraded",
            "RESONANCE_DEGRADED_LOCAL_FANOUT": "true",
        },
        name="degraded-living",
    )
    client, _ = await clients.connected(worker.ws_url, worker.token("dora"))
    await client.rpc("state.report", {"valence": 0.3, "arousal": 0.4})

    async def logged() -> list[Any]:
        while True:
            entries = await redis_client.xrange("living-degraded.events")
            if entries:
                return list(entries)
            await asyncio.sleep(0.05)

    entries = await asyncio.wait_for(logged(), 10)
    stored = [json.loads(fields[b"e"]) for _, fields in entries]
    assert [e["type"] for e in stored if e["subject"] == "dora"] == ["state_changed"]
    replayed = (await client.rpc("events.replay", {"types": ["state_changed"]})).data["events"]
    assert [e["id"] for e in replayed] == [e["id"] for e in stored if e["subject"] == "dora"]


@pytest.mark.redis
async def test_a_room_spans_workers_and_each_resonance_is_published_once(
    redis_server: RedisServer, start_worker: StartWorker, clients: Clients
) -> None:
    """Alice on one worker, Bob on another, one room: both see the whole room's resonance, computed
    by one worker (the first by name), and it rises as their states converge."""
    env = {
        "RESONANCE_ENGINE": "redis",
        "RESONANCE_REDIS_URL": redis_server.url,
        "RESONANCE_REDIS_PREFIX": "living-rooms",
        "RESONANCE_LIVING__ROOM_TICK_SECONDS": "0.2",
        "RESONANCE_LIVING__ROOM_CADENCE_SECONDS": "2",
        "RESONANCE_LIVING__STATE_HALF_LIFE_SECONDS": "0.2",
    }
    later = start_worker(env, name="rooms-b")  # Alice's worker: leads the room until Bob's joins
    first = start_worker(env, name="rooms-a")
    alice, _ = await clients.connected(later.ws_url, later.token("alice"))
    bob, _ = await clients.connected(first.ws_url, first.token("bob"))
    alice_room = await subscribe(alice, "room:duo")
    bob_room = await subscribe(bob, "room:duo")
    await alice.rpc("state.report", {"valence": 0.9, "arousal": 0.9})
    assert (await alice.rpc("room.join", {"room": "duo"})).data["members"] == ["alice"]
    alone = await next_data(alice_room, lambda d: d["type"] == "resonance")
    assert alone["computed_by"] == "rooms-b" and alone["members"] == 1
    await bob.rpc("state.report", {"valence": -0.9, "arousal": 0.1})
    joined = (await bob.rpc("room.join", {"room": "duo"})).data
    assert joined["members"] == ["alice", "bob"]  # Bob's worker knows Alice from the shared entries
    apart = await next_data(
        alice_room, lambda d: d["type"] == "resonance" and d["members"] == 2 and d["agreement"] < 0.5
    )
    assert apart["computed_by"] == "rooms-a" and apart["score"] == apart["agreement"]
    await asyncio.sleep(1.2)  # Bob's old report fades (half-life 0.2 s)
    await bob.rpc("state.report", {"valence": 0.9, "arousal": 0.9})
    close = await next_data(alice_room, lambda d: d["type"] == "resonance" and d["agreement"] > 0.9)
    assert close["score"] > apart["score"] + 0.4 and close["members"] == 2
    await next_data(bob_room, lambda d: d["type"] == "resonance" and (d["agreement"] or 0) > 0.9)
    await asyncio.sleep(4.5)  # two more cadence periods: the steady state after the hand-over

    def resonances(events: SubRecorder) -> list[tuple[int, dict[str, Any]]]:
        return [
            (ctx.pub.offset, ctx.pub.data)
            for name, ctx in events.seen
            if name == "publication" and ctx.pub.data["type"] == "resonance"
        ]

    seen_by_alice, seen_by_bob = resonances(alice_room), resonances(bob_room)
    both = [item for item in seen_by_alice if item[1]["members"] == 2]
    assert len(both) >= 4
    assert [item for item in seen_by_bob if item[1]["members"] == 2] == both  # the same publications
    offsets = [offset for offset, _ in seen_by_alice]
    assert offsets == sorted(set(offsets))  # each arrived once
    # One publisher at a time: after the hand-over only rooms-a computes, never closer than the
    # publisher's 1-s minimum gap (two publishers would interleave within it).
    handed_over = [data is apart for _, data in seen_by_alice].index(True)
    after = [data for _, data in seen_by_alice[handed_over:]]
    assert {data["computed_by"] for data in after} == {"rooms-a"}
    times = [data["at"] for data in after]
    assert all(later_at - earlier >= 1.0 - 1e-6 for earlier, later_at in itertools.pairwise(times))
    # Bob leaves: Alice's worker drops him from its view at its next read; her worker leads again.
    assert (await bob.rpc("room.leave", {"room": "duo"})).data == {"left": "duo"}
    solo = await next_data(alice_room, lambda d: d["type"] == "resonance" and d["members"] == 1)
    assert solo["computed_by"] == "rooms-b"


@pytest.mark.redis
async def test_a_client_sent_away_by_one_worker_is_readmitted_by_another_that_sheds(
    redis_server: RedisServer, start_worker: StartWorker, clients: Clients
) -> None:
    """Readmission tickets travel in the workers' pain snapshots: worker a sends a client away with
    3011 while the cluster is overloaded; the client comes back through worker b (a load balancer
    picks any), which sheds every stranger but lets it in — once."""
    import aiohttp

    env = {
        "RESONANCE_ENGINE": "redis",
        "RESONANCE_REDIS_URL": redis_server.url,
        "RESONANCE_REDIS_PREFIX": "living-tickets",
        **BEHIND_PROXY,
        "RESONANCE_LIVING__THYROID_THRESHOLD": "1",  # 5 protocol errors overload the cluster (≥ 3 × 1)
        "RESONANCE_LIVING__THYROID_IDENTITY_SHARE": "1000",  # one noisy client may do it
        "RESONANCE_LIVING__THYROID_EVALUATE_SECONDS": "0.2",
    }
    a = start_worker(env, name="worker-a")
    b = start_worker(env, name="worker-b")
    phone = {"X-Forwarded-For": "198.51.100.7"}
    stranger = {"X-Forwarded-For": "198.51.100.9"}
    async with aiohttp.ClientSession() as session:
        # A client without reconnects (the SDK would come back to a and use a's own ticket there).
        ws = await session.ws_connect(a.ws_url, headers=phone)
        await ws.send_json({"id": 1, "connect": {"token": a.token("phone")}})
        assert "connect" in await ws.receive_json(timeout=10)
        noisy, _ = await clients.connected(
            a.ws_url, a.token("noisy"), headers={"X-Forwarded-For": "198.51.100.8"}
        )
        for _ in range(5):
            with pytest.raises(centrifuge.ReplyError):
                await noisy.rpc("nope", None)

        async def shed_by(worker: WorkerProcess, headers: dict[str, str]) -> int:
            return (await asyncio.to_thread(worker.http, "GET", "/connection/websocket", None, headers))[0]

        async def until_b_sheds() -> None:
            while True:  # a's pain, felt by b through Redis
                if await shed_by(b, stranger) == 503:
                    return
                await asyncio.sleep(0.1)

        await asyncio.wait_for(until_b_sheds(), 15)
        code, body = await asyncio.to_thread(a.api, "disconnect", {"user": "phone", "code": 3011})
        assert code == 200, body
        closed = await ws.receive(timeout=10)
        assert closed.type is aiohttp.WSMsgType.CLOSE and closed.data == 3011
        # Back through b (the SDK retries a refused handshake): admitted with a's ticket.
        back, _ = await clients.connected(b.ws_url, b.token("phone"), headers=phone)
        assert (await back.rpc("whoami", None)).data["user"] == "phone"
        assert await shed_by(b, phone) == 503  # b used the ticket once
        assert await shed_by(b, stranger) == 503
        assert "resonance_thyroid_readmitted_total 1.0" in await asyncio.to_thread(b.metrics)
