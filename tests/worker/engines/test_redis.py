"""What only the Redis engine does: many nodes on one Redis, surviving Redis
restarts and stalls, its error mapping and its pub/sub wire format. Every test
runs against a real redis-server; the destructive ones start their own."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from resonance_worker.engines.base import ClientInfo, HistoryOptions, Publication, StreamPosition
from resonance_worker.engines.redis import (
    RedisEngine,
    decode_body,
    decode_info,
    decode_publication,
    encode_body,
    encode_info,
)
from resonance_worker.errors import EngineError, EngineTimeoutError

from tests.harness.redis import RedisServer
from tests.worker.engines.conftest import Node, Recorder, unique_prefix

pytestmark = pytest.mark.redis

KEEP = HistoryOptions(size=100, ttl_seconds=60)
ALICE = ClientInfo(user="alice", client="c1", conn_info=b'{"a":[1,2]}', chan_info=b'"x"')
BOB = ClientInfo(user="bob", client="c2")


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test alone, which it may stop, stall and restart."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.process.signal(signal.SIGCONT)
        server.stop()


def fast_engine(
    server: RedisServer, *, timeout: float = 0.5, pubsub_ping_interval: float = 5.0
) -> RedisEngine:
    """Short deadlines and reconnect delays, so outages play out quickly."""
    return RedisEngine(
        server.url,
        prefix=unique_prefix(),
        timeout=timeout,
        pubsub_ping_interval=pubsub_ping_interval,
        reconnect_min_delay=0.02,
        reconnect_max_delay=0.2,
    )


@pytest.fixture
async def engine_on_own_redis(own_redis: RedisServer) -> AsyncIterator[Node]:
    node = Node(fast_engine(own_redis), Recorder())
    await node.engine.start(node.events)
    try:
        yield node
    finally:
        await node.engine.close()


async def until_ready(engine: RedisEngine) -> None:
    """Poll readiness as a Kubernetes probe would, until the engine serves again."""
    async with asyncio.timeout(15):
        while True:
            try:
                await engine.ping()
                return
            except EngineError:
                await asyncio.sleep(0.05)


async def until_reconnected(engine: RedisEngine, reconnects_before: int) -> None:
    """Until the pub/sub connection has been replaced (Redis's restart noticed) and is ready."""
    async with asyncio.timeout(15):
        while engine.reconnects <= reconnects_before:  # noqa: ASYNC110 - the reader task has no event for this
            await asyncio.sleep(0.02)
    await until_ready(engine)


async def published_seen(node: Node, channel: str, data: bytes) -> None:
    await node.events.wait_for(
        lambda: any(
            e.publication and e.publication.data == data for e in node.events.of("publication", channel)
        )
    )


# -- two nodes on one Redis ------------------------------------------------------------


async def test_a_publication_on_one_node_reaches_subscribers_on_the_other(redis_nodes: list[Node]) -> None:
    a, b = redis_nodes
    await a.engine.subscribe("chat:1")

    result = await b.engine.publish("chat:1", b'{"from":"b"}', info=BOB, history=KEEP)

    await published_seen(a, "chat:1", b'{"from":"b"}')
    (event,) = a.events.of("publication", "chat:1")
    assert event.position == result.position
    assert b.events.of("publication", "chat:1") == []  # b has no local subscriber


async def test_history_and_recovery_span_nodes(redis_nodes: list[Node]) -> None:
    a, b = redis_nodes
    first = await a.engine.publish("chat:2", b"1", history=KEEP)
    await b.engine.publish("chat:2", b"2", history=KEEP)
    await a.engine.publish("chat:2", b"3", history=KEEP)

    missed, top = await b.engine.history("chat:2", since=first.position, limit=-1)

    assert [(p.offset, p.data) for p in missed] == [(2, b"2"), (3, b"3")]
    assert top == StreamPosition(3, first.position.epoch)


async def test_join_leave_and_control_reach_every_node(redis_nodes: list[Node]) -> None:
    a, b = redis_nodes
    await a.engine.subscribe("chat:3")
    await b.engine.subscribe("chat:3")

    await a.engine.publish_join("chat:3", ALICE)
    await b.engine.publish_leave("chat:3", ALICE)
    await b.engine.publish_control(b'{"cmd":"disconnect","user":"alice"}')

    for node in (a, b):
        await node.events.wait_for(lambda node=node: len(node.events.events) == 3)  # type: ignore[misc]
        events = [(e.kind, e.info, e.payload) for e in node.events.events]
        # A channel's events arrive in the order they were published. The control channel is another key: on a
        # Cluster it may sit on another shard, whose pub/sub connection is read on its own, and Redis orders
        # messages within a shard only - so its place among the channel's events is not asserted.
        assert [event for event in events if event[0] != "control"] == [
            ("join", ALICE, b""),
            ("leave", ALICE, b""),
        ]
        assert [event for event in events if event[0] == "control"] == [
            ("control", None, b'{"cmd":"disconnect","user":"alice"}')
        ]


async def test_presence_and_token_buckets_are_shared(redis_nodes: list[Node]) -> None:
    a, b = redis_nodes
    await a.engine.add_presence("chat:4", ALICE, ttl_seconds=60)
    await b.engine.add_presence("chat:4", BOB, ttl_seconds=60)

    assert await a.engine.presence("chat:4") == {"c1": ALICE, "c2": BOB}
    assert await b.engine.presence_stats("chat:4") == (2, 2)

    assert await a.engine.take_token("user:alice", rate_per_second=0.5, burst=1) == 0.0
    assert await b.engine.take_token("user:alice", rate_per_second=0.5, burst=1) > 1.0


async def test_concurrent_publishes_from_two_nodes_get_distinct_gap_free_offsets(
    redis_nodes: list[Node],
) -> None:
    a, b = redis_nodes
    await a.engine.subscribe("chat:5")
    results = await asyncio.gather(
        *(node.engine.publish("chat:5", str(n).encode(), history=KEEP) for n in range(50) for node in (a, b))
    )

    assert sorted(r.position.offset for r in results) == list(range(1, 101))
    await a.events.wait_for(lambda: len(a.events.of("publication", "chat:5")) == 100)
    received = [e.position.offset for e in a.events.of("publication", "chat:5") if e.position]
    assert received == list(range(1, 101))  # subscribers see store order


async def test_an_idempotency_key_holds_across_nodes(redis_nodes: list[Node]) -> None:
    a, b = redis_nodes
    first = await a.engine.publish("chat:6", b"1", history=KEEP, idempotency_key="retry-1")
    again = await b.engine.publish("chat:6", b"1", history=KEEP, idempotency_key="retry-1")

    assert again == type(again)(first.position, duplicate=True)


async def test_many_channels_are_resubscribed_in_batches_after_a_restart(own_redis: RedisServer) -> None:
    node = Node(fast_engine(own_redis), Recorder())
    await node.engine.start(node.events)
    try:
        channels = [f"chat:many:{n}" for n in range(600)]
        for channel in channels:
            await node.engine.subscribe(channel)
        own_redis.restart()
        assert isinstance(node.engine, RedisEngine)
        await until_reconnected(node.engine, 0)

        await node.engine.publish(channels[-1], b"last")
        await node.engine.publish(channels[0], b"first")

        await published_seen(node, channels[-1], b"last")
        await published_seen(node, channels[0], b"first")
    finally:
        await node.engine.close()


# -- Redis going away ------------------------------------------------------------------


async def test_ping_fails_while_redis_is_stopped_and_recovers_after(
    own_redis: RedisServer, engine_on_own_redis: Node
) -> None:
    engine = engine_on_own_redis.engine
    assert isinstance(engine, RedisEngine)
    await engine.ping()

    own_redis.stop()
    with pytest.raises(EngineError, match="redis ping"):
        await engine.ping()
    with pytest.raises(EngineError):
        await engine.publish("chat:x", b"1", history=KEEP)
    with pytest.raises(EngineError):
        await engine.subscribe("chat:x")

    assert not engine_on_own_redis.events.of("resumed")  # the first connect is no resumption

    own_redis.start()
    await until_ready(engine)
    assert engine.reconnects >= 1
    # The handler hears that fan-out resumed (what was published meanwhile never reached it).
    assert engine_on_own_redis.events.of("resumed")


async def test_pubsub_resubscribes_after_a_restart_and_streams_get_a_new_epoch(
    own_redis: RedisServer, engine_on_own_redis: Node
) -> None:
    node = engine_on_own_redis
    engine = node.engine
    assert isinstance(engine, RedisEngine)
    await engine.subscribe("chat:r")
    before = await engine.publish("chat:r", b"before", history=KEEP)
    await published_seen(node, "chat:r", b"before")

    own_redis.restart()  # no persistence: every stream is gone
    await until_reconnected(engine, 0)
    after = await engine.publish("chat:r", b"after", history=KEEP)

    await published_seen(node, "chat:r", b"after")
    assert after.position.epoch != before.position.epoch
    assert after.position.offset == 1
    recovered, top = await engine.history("chat:r", since=before.position, limit=-1)
    assert recovered == []  # the caller reports "not recovered"
    assert top == after.position


async def test_with_persistence_a_restart_keeps_the_epoch(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", persistence=True).start()
    engine = fast_engine(server)
    try:
        await engine.start(Recorder())
        before = await engine.publish("chat:p", b"1", history=KEEP)
        server.restart()
        await until_ready(engine)

        after = await engine.publish("chat:p", b"2", history=KEEP)
        kept, _ = await engine.history("chat:p", since=StreamPosition(0, before.position.epoch), limit=-1)

        assert after.position == StreamPosition(2, before.position.epoch)
        assert [p.data for p in kept] == [b"1", b"2"]
    finally:
        await engine.close()
        server.stop()


async def test_a_stalled_redis_gives_timeouts_and_the_silent_pubsub_is_replaced(
    own_redis: RedisServer,
) -> None:
    node = Node(fast_engine(own_redis, timeout=0.3, pubsub_ping_interval=0.2), Recorder())
    engine = node.engine
    assert isinstance(engine, RedisEngine)
    await engine.start(node.events)
    try:
        await engine.subscribe("chat:s")
        own_redis.process.signal(signal.SIGSTOP)  # alive but answering nothing, like a hung VM
        with pytest.raises(EngineTimeoutError, match="timed out"):
            await engine.presence("chat:s")
        with pytest.raises(EngineTimeoutError):
            await engine.history("chat:s", limit=-1)
        await asyncio.sleep(1.0)  # long enough for the reader to notice the silence (a real stall)
        own_redis.process.signal(signal.SIGCONT)

        await until_ready(engine)
        assert engine.reconnects >= 1
        await engine.publish("chat:s", b"after the stall")
        await published_seen(node, "chat:s", b"after the stall")
    finally:
        await engine.close()


# -- robustness and lifecycle ------------------------------------------------------------


class FaultyRecorder(Recorder):
    def on_join(self, channel: str, info: ClientInfo) -> None:
        raise RuntimeError("handler bug")


async def test_bad_messages_and_handler_bugs_do_not_stop_delivery(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    events = FaultyRecorder()
    engine = RedisEngine(redis_server.url, prefix=unique_prefix())
    await engine.start(events)
    raw = aioredis.Redis.from_url(redis_server.url)
    try:
        await engine.subscribe("chat:b")
        channel = f"{engine.prefix}.ch.chat:b"
        with caplog.at_level(logging.WARNING, logger="resonance.worker.engine"):
            await raw.publish(channel, b"?unknown kind")
            await raw.publish(channel, b"p1:e:not json\nxx")
            await engine.publish_join("chat:b", ALICE)
            await engine.publish("chat:b", b"still delivered")
            await published_seen(Node(engine, events), "chat:b", b"still delivered")

        messages = [r.getMessage() for r in caplog.records]
        assert any("unknown message" in m for m in messages)
        assert sum("not delivered" in m for m in messages) == 2
    finally:
        await raw.aclose()
        await engine.close()


async def test_events_without_a_handler_are_dropped(redis_server: RedisServer) -> None:
    engine = RedisEngine(redis_server.url, prefix=unique_prefix())
    await engine.start()
    try:
        await engine.subscribe("chat:n")
        await engine.publish("chat:n", b"1")
        await engine.publish_control(b"{}")
        # Nothing can observe a dropped event; give the reader time to take both, then check it lives on.
        await asyncio.sleep(0.2)
        await engine.ping()
        assert engine.pubsub_connected
    finally:
        await engine.close()


async def test_a_subscribe_waiting_when_redis_dies_fails_at_once(own_redis: RedisServer) -> None:
    engine = fast_engine(own_redis, timeout=10)
    await engine.start(Recorder())
    try:
        await engine.subscribe("chat:w1")
        own_redis.process.signal(signal.SIGSTOP)  # the SUBSCRIBE below gets no confirmation...
        waiting = asyncio.create_task(engine.subscribe("chat:w2"))
        await asyncio.sleep(0.1)
        own_redis.kill()  # ...until the connection breaks

        with pytest.raises(EngineError, match="connection lost"):
            await waiting
        assert not engine.pubsub_connected
    finally:
        await engine.close()


async def test_lifecycle_errors_are_clear(redis_server: RedisServer) -> None:
    engine = RedisEngine(redis_server.url, prefix=unique_prefix())
    with pytest.raises(EngineError, match="before start"):
        await engine.ping()
    with pytest.raises(EngineError, match="before start"):
        await engine.subscribe("chat:early")
    await engine.close()  # never started: harmless
    await engine.start()
    await engine.close()
    await engine.close()  # twice: harmless


async def test_unsubscribe_while_disconnected_is_quiet(
    own_redis: RedisServer, engine_on_own_redis: Node
) -> None:
    engine = engine_on_own_redis.engine
    assert isinstance(engine, RedisEngine)
    await engine.subscribe("chat:u")
    await engine.subscribe("chat:u2")
    own_redis.stop()
    await engine.unsubscribe("chat:u")  # the reader may not have noticed yet
    async with asyncio.timeout(10):
        while engine.pubsub_connected:  # noqa: ASYNC110 - the reader task has no event for this
            await asyncio.sleep(0.02)
    await engine.unsubscribe("chat:u2")  # it has now
    own_redis.start()
    await until_reconnected(engine, 0)

    await engine.subscribe("chat:v")
    await engine.publish("chat:u", b"not for us")
    await engine.publish("chat:v", b"for us")
    await published_seen(engine_on_own_redis, "chat:v", b"for us")
    assert engine_on_own_redis.events.of("publication", "chat:u") == []


# -- wire format ---------------------------------------------------------------------------


@pytest.mark.parametrize("info", [ALICE, BOB, None])
def test_publication_bodies_round_trip(info: ClientInfo | None) -> None:
    data = b'{"text":"line\\nbreak","n":[1,2]}\n'  # the data may itself hold newlines
    body = encode_body(data, info, {"k": "v"} if info else None, 1234)

    publication, position = decode_publication(b"p7:ab12:" + body)

    assert position == StreamPosition(7, "ab12")
    assert publication == Publication(
        data=data, offset=7, info=info, tags={"k": "v"} if info else {}, time_ms=1234
    )
    assert decode_body(body, 3).offset == 3


def test_client_info_round_trips() -> None:
    for info in (ALICE, BOB):
        assert decode_info(encode_info(info)) == info


async def test_starting_while_redis_is_down_is_not_fatal(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")  # not started yet
    engine = fast_engine(server)
    await engine.start(Recorder())  # waits at most `timeout` for the pub/sub connection
    try:
        assert not engine.pubsub_connected
        with pytest.raises(EngineError):
            await engine.ping()
        server.start()
        await until_ready(engine)
    finally:
        await engine.close()
        server.stop()


async def test_a_message_in_flight_when_unsubscribing_is_dropped(
    own_redis: RedisServer, engine_on_own_redis: Node
) -> None:
    engine = engine_on_own_redis.engine
    assert isinstance(engine, RedisEngine)
    await engine.subscribe("chat:late")
    await engine.subscribe("chat:next")
    raw = aioredis.Redis.from_url(own_redis.url)

    async def publish_late() -> None:
        await raw.publish(f"{engine.prefix}.ch.chat:late", b"p0::{}\nlate")

    try:
        await raw.ping()
        own_redis.process.signal(signal.SIGSTOP)  # queue a PUBLISH and the UNSUBSCRIBE together
        in_flight = asyncio.create_task(publish_late())
        await asyncio.sleep(0.05)
        await engine.unsubscribe("chat:late")
        own_redis.process.signal(signal.SIGCONT)
        await in_flight

        await engine.publish("chat:next", b"next")
        await published_seen(engine_on_own_redis, "chat:next", b"next")
        assert engine_on_own_redis.events.of("publication", "chat:late") == []
    finally:
        await raw.aclose()


async def test_a_burst_larger_than_the_pool_waits_for_connections_instead_of_failing(
    redis_server: RedisServer,
) -> None:
    # redis-py's default pool raises "Too many connections" past its size; a connect burst on a
    # busy pod must queue for a pooled connection instead of answering clients with an error.
    engine = RedisEngine(redis_server.url, prefix=unique_prefix(), max_connections=4)
    await engine.start()
    try:
        history = HistoryOptions(size=100, ttl_seconds=60)
        results = await asyncio.gather(*(engine.publish("burst", b"{}", history=history) for _ in range(60)))
        assert sorted(r.position.offset for r in results) == list(range(1, 61))
        # The pool stayed at its bound: the 60 commands shared 4 connections.
        assert engine.client.connection_pool.max_connections == 4
    finally:
        await engine.close()


async def test_commands_of_one_loop_iteration_share_a_pipeline_and_lost_scripts_are_reloaded(
    redis_nodes: list[Node],
) -> None:
    a, _ = redis_nodes
    # Twenty publishes issued together: distinct, gap-free offsets, each kept under its own.
    results = await asyncio.gather(
        *(a.engine.publish("chat:burst", str(n).encode(), history=KEEP) for n in range(20))
    )
    assert sorted(r.position.offset for r in results) == list(range(1, 21))
    sent = {r.position.offset: str(n).encode() for n, r in enumerate(results)}
    # A Redis that forgot every script (as after a restart without persistence) still answers.
    # (On a Cluster the engine's client flushes every primary.)
    assert isinstance(a.engine, RedisEngine)
    await a.engine.client.script_flush()
    pubs, top = await a.engine.history("chat:burst", limit=-1)
    assert {p.offset: p.data for p in pubs} == sent
    await a.engine.add_presence("chat:burst", ALICE, ttl_seconds=30)
    assert set(await a.engine.presence("chat:burst")) == {"c1"}
    assert top.offset == 20


async def test_a_pipelined_command_before_start_is_refused() -> None:
    engine = RedisEngine("redis://127.0.0.1:1/0")
    with pytest.raises(EngineError, match="before start"):
        await engine.publish_join("chat:x", ALICE)


async def test_calls_issued_while_pipelines_are_out_go_together_in_the_next_one(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = RedisEngine(redis_server.url, prefix=unique_prefix())
    await engine.start()
    history = HistoryOptions(size=1000, ttl_seconds=60)
    await engine.publish("warm-up", b"{}", history=history)  # the script is loaded (another test flushes)
    pipeline = engine._pipeline
    sizes: list[int] = []
    out, most_out = 0, 0
    execute = pipeline._execute

    async def counting(batch: list[Any]) -> None:  # the real pipeline, counted
        nonlocal out, most_out
        sizes.append(len(batch))
        out += 1
        most_out = max(most_out, out)
        try:
            await execute(batch)
        finally:
            out -= 1

    monkeypatch.setattr(pipeline, "_execute", counting)
    try:
        calls = []
        for _wave in range(30):  # thirty loop iterations in a row, ten publishes each
            wave = [engine.publish("waves", b"{}", history=history) for _ in range(10)]
            calls += [asyncio.ensure_future(call) for call in wave]
            await asyncio.sleep(0)
        results = await asyncio.gather(*calls)
        assert sorted(r.position.offset for r in results) == list(range(1, 301))
        assert sum(sizes) == 300
        assert most_out <= 2  # never more than two pipelines out at once …
        assert len(sizes) < 30  # … so the waves issued meanwhile were sent together
    finally:
        await engine.close()


async def test_a_burst_read_in_one_go_is_dispatched_in_order_beside_a_subscribe(
    redis_server: RedisServer,
) -> None:
    # Three hundred publications (and joins between them) written by one pipelined client arrive in a
    # few socket reads; the reader takes what hiredis parsed without a round of its own each, and a
    # subscribe confirmed in the middle of the burst still completes.
    node = Node(RedisEngine(redis_server.url, prefix=unique_prefix()), Recorder())
    await node.engine.start(node.events)
    raw = aioredis.Redis.from_url(redis_server.url)
    try:
        assert isinstance(node.engine, RedisEngine)
        await node.engine.subscribe("chat:burst")
        async with raw.pipeline(transaction=False) as pipe:
            for n in range(300):
                fanout = node.engine.fanout_frame("chat:burst", str(n).encode())
                pipe.execute_command(fanout.command, fanout.channel, fanout.frame)
                if n % 100 == 0:
                    pipe.execute_command(fanout.command, fanout.channel, b"j" + encode_info(ALICE))
            burst = asyncio.ensure_future(pipe.execute())
            await node.engine.subscribe("chat:beside")
            await burst
        await node.engine.publish("chat:beside", b"{}")
        events = node.events
        await events.wait_for(lambda: len(events.of("publication")) == 301)
        data = [e.publication.data for e in events.of("publication", "chat:burst") if e.publication]
        assert data == [str(n).encode() for n in range(300)]
        assert [e.info for e in events.of("join", "chat:burst")] == [ALICE] * 3
        assert len(events.of("publication", "chat:beside")) == 1
    finally:
        await raw.aclose()
        await node.engine.close()


async def test_an_error_reply_answers_its_own_call_and_a_killed_connection_is_replaced(
    own_redis: RedisServer,
) -> None:
    # The auto-pipeline writes a batch and reads its replies on a pooled connection itself: an error
    # reply goes to its caller alone, the others of the batch get theirs, and a pooled connection the
    # server closed meanwhile is replaced (the client's one quick retry, as redis-py's pipeline does).
    engine = RedisEngine(own_redis.url, prefix=unique_prefix())
    await engine.start()
    try:
        key = f"{engine.prefix}.plain"
        await engine.client.set(key, "text")
        pipeline = engine._pipeline
        first, wrong, last = (
            pipeline.call("PUBLISH", "nobody", "x"),
            pipeline.call("INCR", key),  # not an integer: an error reply
            pipeline.call("SCRIPT", "EXISTS", "0" * 40),
        )
        assert await first == 0
        with pytest.raises(aioredis.ResponseError, match="not an integer"):
            await wrong
        assert await last == [0]
        killer = aioredis.Redis.from_url(own_redis.url)
        try:  # every other normal connection: the engine's pooled ones (its pub/sub is not "normal")
            assert await killer.client_kill_filter(_type="normal", skipme=True) >= 1
        finally:
            await killer.aclose()
        result = await engine.publish("chat:after-kill", b"{}", history=KEEP)
        assert result.position.offset == 1
    finally:
        await engine.close()
