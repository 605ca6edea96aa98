"""The load tool against a real Centrifugo v6 and the real centrifuge-python SDK: the frames it sends are
understood by the server and by the official client, what it receives is what the SDK published, recovery
after a drop returns every missed publication, and every scenario runs end to end and stops by itself."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time
from pathlib import Path
from typing import Any

import centrifuge
import pytest

from bench.centrifugo.config import Engine
from bench.load import protocol, runner
from bench.load.__main__ import main as cli_main
from bench.load.scenario import Encoding, Kind, PublishVia, Scenario, Target
from bench.load.servers import Stack
from bench.load.shard import GAP_SEQ_BASE, Shard, ShardPlan, monotonic_ns

pytestmark = pytest.mark.timeout(900)  # the first run builds Centrifugo (~5 min on 2 cores)


class Collector(centrifuge.SubscriptionEventHandler):  # type: ignore[misc]
    def __init__(self) -> None:
        self.data: list[Any] = []
        self.subscribed = asyncio.Event()

    async def on_subscribed(self, ctx: Any) -> None:
        self.subscribed.set()

    async def on_publication(self, ctx: Any) -> None:
        self.data.append(ctx.pub.data)


def in_process_shard(target: Target, scenario: Scenario) -> Shard:
    parent, _child = multiprocessing.Pipe()
    plan = ShardPlan(index=0, scenario=scenario, target=target, connections=range(scenario.connections))
    return Shard(plan, parent)


async def sdk_subscriber(target: Target, channel: str) -> tuple[centrifuge.Client, Collector]:
    token = protocol.mint_token(target.token_secret, "sdk-user", now=time.time())
    client = centrifuge.Client(target.ws_urls[0], token=token)
    collector = Collector()
    subscription = client.new_subscription(channel, events=collector)
    await client.connect()
    await subscription.subscribe()
    await asyncio.wait_for(collector.subscribed.wait(), 10)
    return client, collector


async def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("encoding", list(Encoding))
async def test_tool_and_sdk_understand_each_other(centrifugo_memory: Target, encoding: Encoding) -> None:
    """In protobuf, the tool's binary frames and the JSON SDK share one channel through the server."""
    scenario = Scenario(
        kind=Kind.CHAT, connections=4, room_size=4, publish_rate_per_room=4, processes=1, encoding=encoding
    )
    shard = in_process_shard(centrifugo_memory, scenario)
    connected = await shard.phase_connect()
    assert connected["ok"] == 4, shard.first_errors
    client, collector = await sdk_subscriber(centrifugo_memory, "chat:bench-0")
    try:
        # The tool publishes (client publish from connection 0): the SDK receives decodable payloads.
        outcome = await shard.phase_publish(
            start_ns=monotonic_ns() + 100_000_000, duration_s=0.5, drain_s=0.5
        )
        assert outcome["published"] == 2
        assert outcome["publish_errors"] == 0
        await wait_for(lambda: len(collector.data) == 2)
        payloads = [protocol.decode_payload(d) for d in collector.data]
        assert [p.seq for p in payloads] == [0, 1]
        assert all(p.room == 0 and p.node == 0 for p in payloads)
        assert shard.received == 2 * 4  # every tool connection in the room got both
        # The SDK publishes a tool payload: every tool connection records it with a latency.
        before = shard.received
        sent = protocol.Payload(monotonic_ns(), 0, 0, 99, protocol.padding_for(100))
        await client.publish("chat:bench-0", protocol.encode_payload(sent))
        await wait_for(lambda: shard.received == before + 4)
        assert 0 < shard.latency_local.maximum < 10_000
        assert shard.errors == 0, shard.first_errors
    finally:
        await client.disconnect()
        await shard.phase_close()


async def test_reconnecting_connections_recover_what_the_room_missed(centrifugo_memory: Target) -> None:
    scenario = Scenario(kind=Kind.RECONNECT_STORM, connections=6, room_size=3, processes=1, gap_messages=3)
    shard = in_process_shard(centrifugo_memory, scenario)
    assert (await shard.phase_connect())["ok"] == 6
    client, collector = await sdk_subscriber(centrifugo_memory, "chat:bench-1")
    try:
        dropped = await shard.phase_drop()
        assert dropped == {"dropped": 4, "without_position": 0}
        assert (await shard.phase_gap(messages=3))["gap_published"] == 6
        await wait_for(lambda: len(collector.data) == 3)  # the SDK, still connected, saw the gap live
        assert [protocol.decode_payload(d).seq for d in collector.data] == [
            GAP_SEQ_BASE + k for k in range(3)
        ]
        back = await shard.phase_reconnect(messages=3)
        assert back["ok"] == 4
        assert back["recovered_subs"] == 4
        assert back["unrecovered_subs"] == 0
        assert back["complete"] == 4
        assert back["missing_messages"] == 0
    finally:
        await client.disconnect()
        await shard.phase_close()


async def test_api_publishing_reaches_subscribers(centrifugo_memory: Target) -> None:
    scenario = Scenario(
        kind=Kind.CHAT,
        connections=4,
        room_size=2,
        publish_rate_per_room=2,
        publish_via=PublishVia.API,
        processes=1,
    )
    shard = in_process_shard(centrifugo_memory, scenario)
    assert (await shard.phase_connect())["ok"] == 4
    try:
        outcome = await shard.phase_publish(start_ns=monotonic_ns(), duration_s=1.0, drain_s=0.5)
        assert outcome == {**outcome, "published": 4, "expected": 8, "publish_errors": 0}
        assert shard.phase_collect()["received"] == 8
    finally:
        await shard.phase_close()


def test_a_bad_token_is_reported_not_hidden(centrifugo_memory: Target) -> None:
    wrong = centrifugo_memory.model_copy(update={"token_secret": "not-the-secret-but-32-bytes-long!"})
    scenario = Scenario(kind=Kind.CHAT, connections=2, room_size=2, processes=1, connect_timeout_s=20)

    async def attempt() -> dict[str, Any]:
        shard = in_process_shard(wrong, scenario)
        try:
            return await shard.phase_connect() | {"first_errors": shard.first_errors}
        finally:
            await shard.phase_close()

    outcome = asyncio.run(attempt())
    assert outcome["ok"] == 0
    assert outcome["failed"] == 2
    assert any("connect failed" in e or "closed" in e for e in outcome["first_errors"]), outcome


async def test_a_ramp_past_its_deadline_is_cut_off_and_counted(centrifugo_memory: Target) -> None:
    scenario = Scenario(kind=Kind.CHAT, connections=5, room_size=5, processes=1, connect_timeout_s=1e-6)
    shard = in_process_shard(centrifugo_memory, scenario)
    outcome = await shard.phase_connect()
    assert outcome["ok"] == 0
    assert outcome["failed"] == outcome["timed_out"] == 5
    assert "still connecting" in shard.first_errors[-1]
    assert all(conn.closed for conn in shard.conns)
    await shard.phase_close()


@pytest.mark.parametrize(
    "scenario",
    [
        Scenario(kind=Kind.IDLE, connections=40, room_size=10, processes=2, settle_s=0.3),
        Scenario(
            kind=Kind.CHAT,
            connections=40,
            room_size=10,
            publish_rate_per_room=4,
            duration_s=1,
            settle_s=0.3,
            drain_s=0.5,
            processes=1,
        ),
        Scenario(
            kind=Kind.BROADCAST,
            connections=30,
            room_size=30,
            publish_rate_per_room=5,
            duration_s=1,
            settle_s=0.3,
            drain_s=0.5,
            processes=1,
        ),
        Scenario(kind=Kind.RECONNECT_STORM, connections=30, room_size=10, gap_messages=2, settle_s=0.3),
        Scenario(
            kind=Kind.RECONNECT_STORM,
            connections=30,
            room_size=10,
            gap_messages=2,
            settle_s=0.3,
            encoding=Encoding.PROTOBUF,
        ),
    ],
    ids=lambda s: f"{s.kind.value}-{s.encoding.value}",
)
def test_every_scenario_runs_end_to_end_in_load_processes(
    centrifugo_memory: Target, scenario: Scenario
) -> None:
    result = runner.run(scenario, centrifugo_memory)
    json.dumps(result)  # JSON-ready
    assert result["connect"]["connected"] == scenario.connections
    assert result["connect"]["errors"] == 0, result["connect"]["first_errors"]
    assert result["idle"]["server_kib_per_connection"] > 0
    assert result["timeline"]
    if scenario.kind in (Kind.CHAT, Kind.BROADCAST):
        publish = result["publish"]
        assert publish["received"] == publish["expected_deliveries"] > 0
        assert publish["delivery_ratio"] == 1.0
        assert publish["latency_ms"]["count"] == publish["received"]
        assert publish["latency_cross_node_ms"] is None
    if scenario.kind is Kind.RECONNECT_STORM:
        storm = result["storm"]
        assert storm["reconnected"] == storm["returning"] == 27
        assert storm["recovered_subscriptions"] == 27
        assert storm["missing_messages"] == 0


def test_cross_node_delivery_over_redis(centrifugo_stack: Stack) -> None:
    target = centrifugo_stack.start_centrifugo(Engine.REDIS, nodes=2)
    scenario = Scenario(
        kind=Kind.CROSS_NODE,
        connections=20,
        room_size=10,
        publish_rate_per_room=4,
        duration_s=1,
        settle_s=0.3,
        drain_s=0.5,
        processes=1,
    )
    result = runner.run(scenario, target)
    publish = result["publish"]
    assert result["nodes"] == 2
    assert publish["delivery_ratio"] == 1.0
    # Publishers sit on node 0 and rooms alternate nodes: half the deliveries crossed Redis.
    assert publish["latency_cross_node_ms"]["count"] == publish["latency_same_node_ms"]["count"] == 40
    with pytest.raises(ValueError, match="two nodes"):
        runner.run(scenario, target.model_copy(update={"ws_urls": target.ws_urls[:1]}))


def test_command_line_writes_json_and_plot(tmp_path: Path, centrifugo_built: Path) -> None:
    arguments = "chat --target centrifugo-memory --connections 20 --room-size 10 --duration 1 --processes 1"
    arguments += " --settle 0.3 --drain 0.5 --no-pin --nice 1"
    code = cli_main([*arguments.split(), "--out", str(tmp_path)])
    assert code == 0
    (result_file,) = tmp_path.glob("chat-centrifugo-memory-*.json")
    result = json.loads(result_file.read_text())
    assert result["publish"]["delivery_ratio"] == 1.0
    (plot_file,) = tmp_path.glob("chat-centrifugo-memory-*.png")
    assert plot_file.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cli_main(["chat"]) == 2  # neither a target nor a URL
