"""Scenario and target validation, and how connections map to rooms, processes and addresses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from bench.load.scenario import Kind, Scenario, Target, chat_scenario, node_of, source_address


def test_chat_rooms_and_publishers() -> None:
    scenario = Scenario(kind=Kind.CHAT, connections=120, room_size=50)
    assert scenario.rooms == 3
    assert list(scenario.members_of(2)) == list(range(100, 120))
    assert [scenario.publisher_of(r) for r in range(3)] == [0, 50, 100]
    assert scenario.room_of(99) == 1
    assert scenario.publishes
    assert scenario.expected_deliveries() == 120


def test_idle_and_zero_rate_do_not_publish() -> None:
    assert not Scenario(kind=Kind.IDLE, connections=10, room_size=5).publishes
    assert not Scenario(kind=Kind.CHAT, connections=10, room_size=5, publish_rate_per_room=0).publishes


@given(st.integers(min_value=1, max_value=5000), st.integers(min_value=1, max_value=64))
def test_shards_partition_the_connections_evenly(connections: int, processes: int) -> None:
    scenario = Scenario(kind=Kind.IDLE, connections=connections, room_size=1, processes=processes)
    ranges = scenario.shard_ranges()
    assert [i for r in ranges for i in r] == list(range(connections))
    sizes = [len(r) for r in ranges]
    assert max(sizes) - min(sizes) <= 1
    assert len(ranges) == min(connections, processes)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "broadcast", "connections": 100, "room_size": 50}, "room_size must equal"),
        ({"kind": "chat", "connections": 10, "room_size": 50}, "cannot exceed"),
        ({"kind": "chat", "connections": 40_000, "processes": 2}, "at least 3 processes"),
        ({"kind": "chat", "connections": 60_000, "processes": 4, "source_addresses": 2}, "ephemeral"),
        ({"kind": "reconnect_storm", "connections": 10, "room_size": 1}, "at least 2"),
        ({"kind": "chat", "connections": 0}, "greater than or equal to 1"),
        ({"kind": "chat", "connections": 10, "room_size": 5, "duration_s": 0}, "greater than 0"),
        ({"kind": "chat", "connections": 10, "room_size": 5, "surprise": 1}, "Extra inputs"),
        ({"kind": "fanfare", "connections": 10}, "Input should be"),
    ],
)
def test_invalid_scenarios_are_refused_with_a_reason(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Scenario.model_validate(fields)


def test_targets_need_websocket_and_http_urls() -> None:
    target = Target(name="t", ws_urls=("ws://127.0.0.1:1/connection/websocket",), token_secret="s")
    assert target.channel_prefix == "chat:"
    with pytest.raises(ValidationError, match="ws://"):
        Target(name="t", ws_urls=("http://127.0.0.1:1/",), token_secret="s")
    with pytest.raises(ValidationError, match="http"):
        Target(name="t", ws_urls=("ws://a/",), api_url="ftp://x", token_secret="s")
    with pytest.raises(ValidationError, match="at least 1"):
        Target(name="t", ws_urls=(), token_secret="s")


def test_connections_alternate_over_nodes_and_source_addresses() -> None:
    assert [node_of(i, 2) for i in range(4)] == [0, 1, 0, 1]
    assert [source_address(i, 3) for i in range(4)] == ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.2"]


def test_chat_scenario_fixes_the_rooms_and_passes_the_rest() -> None:
    scenario = chat_scenario(2000, source_addresses=200, seconds=3.0, processes=2, settle_s=0.5)
    assert (scenario.kind, scenario.room_size, scenario.publish_rate_per_room) == (Kind.CHAT, 50, 1.0)
    assert (scenario.connections, scenario.source_addresses, scenario.duration_s) == (2000, 200, 3.0)
    assert (scenario.processes, scenario.settle_s) == (2, 0.5)
    assert scenario.rooms == 40
    with pytest.raises(ValueError, match="room_size cannot exceed connections"):
        chat_scenario(10, source_addresses=2, seconds=1.0)


def test_connect_to_must_be_address_and_port() -> None:
    target = Target(
        name="t", ws_urls=("ws://realtime.example:8080/c",), token_secret="s", connect_to="127.0.0.1:80"
    )
    assert target.connect_to == "127.0.0.1:80"
    with pytest.raises(ValueError, match="connect_to must be address:port"):
        Target(name="t", ws_urls=("ws://h/c",), token_secret="s", connect_to="127.0.0.1")
