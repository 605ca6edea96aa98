"""The client commands' parsers: JSON objects in, typed requests (or ``Malformed``) out."""

from __future__ import annotations

from typing import Any

import pytest
from resonance_worker.domain.codes import ErrorCode
from resonance_worker.domain.protocol import METHODS
from resonance_worker.domain.requests.client import (
    CLIENT_REQUESTS,
    NO_OPTIONS,
    PONG,
    ConnectRequest,
    HistoryRequest,
    Malformed,
    PingRequest,
    PresenceRequest,
    PresenceStatsRequest,
    PublishRequest,
    RefreshRequest,
    RpcRequest,
    SendRequest,
    SubRefreshRequest,
    SubscribeOptions,
    SubscribeRequest,
    UnsubscribeRequest,
    parse_command,
)


def test_every_method_has_a_parser() -> None:
    assert set(CLIENT_REQUESTS) == set(METHODS)
    assert parse_command(0, "", {}) is PONG and PONG.is_pong


@pytest.mark.parametrize(
    ("method", "params", "request_"),
    [
        ("connect", {}, ConnectRequest()),
        (
            "connect",
            {"token": "t", "subs": {"chat:a": {"recover": True, "offset": 4, "epoch": "e"}}, "name": "js"},
            ConnectRequest("t", {"chat:a": SubscribeOptions(since=(4, "e"))}, name="js"),  # the platform
        ),
        ("connect", {"subs": {"chat:a": None}}, ConnectRequest("", {"chat:a": NO_OPTIONS})),
        ("subscribe", {"channel": "chat:a"}, SubscribeRequest("chat:a")),
        (
            "subscribe",
            {
                "channel": "c",
                "token": "t",
                "recoverable": 1,
                "positioned": True,
                "join_leave": "y",
                "flag": 3,
            },
            SubscribeRequest("c", "t", SubscribeOptions(True, True, True, None, True)),
        ),
        (
            "subscribe",
            {"channel": "c", "recover": True},
            SubscribeRequest("c", "", SubscribeOptions(since=(0, ""))),
        ),
        ("subscribe", {"channel": "c", "offset": "junk"}, SubscribeRequest("c")),  # no recover: not read
        ("subscribe", {"channel": "c", "flag": True}, SubscribeRequest("c")),
        ("unsubscribe", {"channel": "c"}, UnsubscribeRequest("c")),
        ("publish", {"channel": "c", "data": {"x": 1}}, PublishRequest("c", b'{"x":1}')),
        ("presence", {"channel": "c"}, PresenceRequest("c")),
        ("presence_stats", {"channel": "c"}, PresenceStatsRequest("c")),
        ("history", {"channel": "c"}, HistoryRequest("c")),
        (
            "history",
            {"channel": "c", "limit": -1, "since": {"offset": 2, "epoch": "e"}, "reverse": True},
            HistoryRequest("c", -1, (2, "e"), True),
        ),
        ("history", {"channel": "c", "since": None}, HistoryRequest("c")),
        ("rpc", {}, RpcRequest()),
        ("rpc", {"method": "echo", "data": [1]}, RpcRequest("echo", b"[1]")),
        ("send", {"data": "hi"}, SendRequest(b'"hi"')),
        ("send", {}, SendRequest()),
        ("refresh", {"token": "t"}, RefreshRequest("t")),
        ("sub_refresh", {"channel": "c", "token": "t"}, SubRefreshRequest("c", "t")),
        ("sub_refresh", {"channel": "c"}, SubRefreshRequest("c")),
        ("ping", {}, PingRequest()),
    ],
)
def test_requests_are_parsed_into_their_types(method: str, params: dict[str, Any], request_: Any) -> None:
    command = parse_command(7, method, params)
    assert (command.id, command.method, command.request) == (7, method, request_)
    assert not command.is_pong


@pytest.mark.parametrize(
    ("method", "params", "fatal"),
    [
        ("connect", {"token": 5}, True),
        ("connect", {"subs": [1]}, True),
        ("connect", {"subs": {"chat:a": 5}}, True),
        ("connect", {"subs": {"chat:a": {"recover": True, "offset": "3"}}}, True),
        ("subscribe", {}, True),
        ("subscribe", {"channel": ""}, True),
        ("subscribe", {"channel": "c", "token": 5}, True),
        ("subscribe", {"channel": "c", "recover": True, "offset": "3"}, True),
        ("subscribe", {"channel": "c", "recover": True, "offset": True}, True),
        ("subscribe", {"channel": "c", "recover": True, "offset": -1}, True),
        ("subscribe", {"channel": "c", "recover": True, "epoch": 1}, True),
        ("unsubscribe", {"channel": 3}, True),
        ("publish", {"channel": "c"}, False),
        ("publish", {"channel": "c", "data": None}, False),
        ("presence", {}, True),
        ("presence_stats", {"channel": None}, True),
        ("history", {"channel": "c", "limit": True}, False),
        ("history", {"channel": "c", "limit": "3"}, False),
        ("history", {"channel": "c", "since": {"offset": "3"}}, False),
        ("history", {"channel": "c", "since": {"offset": True}}, False),
        ("history", {"channel": "c", "since": {"epoch": 3}}, False),
        ("history", {"channel": "c", "reverse": 1}, False),
        ("rpc", {"method": 3}, False),
        ("refresh", {}, True),
        ("refresh", {"token": ""}, True),
        ("sub_refresh", {"token": "t"}, True),
        ("sub_refresh", {"channel": "c", "token": 5}, False),
    ],
)
def test_malformed_requests_carry_their_error(method: str, params: dict[str, Any], fatal: bool) -> None:
    command = parse_command(9, method, params)
    assert isinstance(command.request, Malformed), command.request
    error = command.request.error
    assert error.code is ErrorCode.BAD_REQUEST and error.fatal is fatal and error.message


@pytest.mark.parametrize(
    ("data", "traceparent"),
    [
        ({"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, True),
        ({"traceparent": 7}, False),
        ({"traceparent": "x" * 129}, False),
        ({"traceparent": "00-ü"}, False),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", False),  # only inside an object
        (None, False),
    ],
)
def test_connect_data_may_carry_a_traceparent(data: Any, traceparent: bool) -> None:
    request = CLIENT_REQUESTS["connect"]({"token": "t", "data": data})
    assert request.traceparent == (data["traceparent"] if traceparent else "")
