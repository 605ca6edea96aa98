"""The server API's body parsers."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from resonance_worker.domain.codes import ErrorCode
from resonance_worker.domain.requests.client import HistoryRequest, PresenceRequest, PresenceStatsRequest
from resonance_worker.domain.requests.rules import RequestError
from resonance_worker.domain.requests.server import (
    SERVER_REQUESTS,
    ApiBroadcastRequest,
    ApiChannelsRequest,
    ApiConnectionsRequest,
    ApiDisconnectRequest,
    ApiInfoRequest,
    ApiPublishRequest,
    ApiUnsubscribeRequest,
    control_message,
    parse_control,
)


@pytest.mark.parametrize(
    ("method", "body", "request_"),
    [
        ("publish", {"channel": "c", "data": 1}, ApiPublishRequest("c", b"1")),
        (
            "publish",
            {"channel": "c", "data": {}, "idempotency_key": "k", "tags": {"a": "b"}},
            ApiPublishRequest("c", b"{}", "k", {"a": "b"}),
        ),
        ("broadcast", {"channels": ["a", "b"], "data": "x"}, ApiBroadcastRequest(("a", "b"), b'"x"')),
        ("presence", {"channel": "c"}, PresenceRequest("c")),
        ("presence_stats", {"channel": "c"}, PresenceStatsRequest("c")),
        ("history", {"channel": "c", "limit": 3, "reverse": True}, HistoryRequest("c", 3, None, True)),
        ("disconnect", {"user": "u"}, ApiDisconnectRequest("u")),
        ("disconnect", {"user": "u", "code": 4500, "reason": "bye"}, ApiDisconnectRequest("u", 4500, "bye")),
        ("disconnect", {"user": "u", "reason": 5}, ApiDisconnectRequest("u", 3503, "5")),
        ("unsubscribe", {"user": "u", "channel": "c"}, ApiUnsubscribeRequest("u", "c")),
        ("info", {}, ApiInfoRequest()),
        ("channels", {}, ApiChannelsRequest()),
        ("channels", {"pattern": "chat:*"}, ApiChannelsRequest("chat:*")),
        ("connections", {}, ApiConnectionsRequest()),
        ("connections", {"user": "ana"}, ApiConnectionsRequest("ana")),
        ("connections", {"user": ""}, ApiConnectionsRequest("")),  # anonymous connections
    ],
)
def test_bodies_are_parsed_into_their_types(method: str, body: dict[str, Any], request_: Any) -> None:
    assert SERVER_REQUESTS[method](body) == request_


@pytest.mark.parametrize(
    ("method", "body", "field"),
    [
        ("publish", {"channel": "c"}, "data"),
        ("publish", {"channel": "c", "data": None}, "data"),
        ("publish", {"data": 1}, "channel"),
        ("publish", {"channel": "c", "data": 1, "idempotency_key": 5}, "idempotency_key"),
        ("publish", {"channel": "c", "data": 1, "tags": {"a": 1}}, "tags"),
        ("publish", {"channel": "c", "data": 1, "tags": ["a"]}, "tags"),
        ("broadcast", {"channels": [], "data": 1}, "channels"),
        ("broadcast", {"channels": "c", "data": 1}, "channels"),
        ("broadcast", {"channels": ["a", 5], "data": 1}, "channel"),
        ("broadcast", {"channels": ["a"]}, "data"),
        ("history", {"channel": "c", "since": {"offset": "1"}}, "offset"),
        ("history", {"channel": "c", "since": {"epoch": 1}}, "epoch"),
        ("disconnect", {}, "user"),
        ("disconnect", {"user": "u", "code": 1000}, "code"),
        ("disconnect", {"user": "u", "code": 5000}, "code"),
        ("disconnect", {"user": "u", "code": "3503"}, "code"),
        ("disconnect", {"user": "u", "code": True}, "code"),
        ("unsubscribe", {"user": "u"}, "channel"),
        ("unsubscribe", {"channel": "c"}, "user"),
        ("channels", {"pattern": ""}, "pattern"),
        ("channels", {"pattern": 5}, "pattern"),
        ("connections", {"user": ["ana"]}, "user"),
    ],
)
def test_bad_bodies_say_which_field(method: str, body: dict[str, Any], field: str) -> None:
    with pytest.raises(RequestError) as refused:
        SERVER_REQUESTS[method](body)
    assert refused.value.code is ErrorCode.BAD_REQUEST
    assert field in refused.value.message


@pytest.mark.parametrize(
    "request_", [ApiDisconnectRequest("u", 4500, "bye"), ApiUnsubscribeRequest("u", "chat:a")]
)
def test_a_control_message_carries_its_request_to_every_worker(request_: Any) -> None:
    payload = control_message(request_)
    assert parse_control(payload) == request_
    assert orjson.loads(payload)["op"] in ("disconnect", "unsubscribe")


def test_the_control_message_format_is_stable_across_versions() -> None:
    """Workers of two versions share the control channel during a rollout."""
    assert orjson.loads(control_message(ApiDisconnectRequest("u", 3503, "force disconnect"))) == {
        "op": "disconnect",
        "user": "u",
        "code": 3503,
        "reason": "force disconnect",
    }
    assert parse_control(b'{"op": "unsubscribe", "user": "u", "channel": "c"}') == ApiUnsubscribeRequest(
        "u", "c"
    )


@pytest.mark.parametrize(
    "payload", [b"{", b"[]", b"{}", b'{"op": "publish"}', b'{"op": "disconnect", "user": ""}', b"null"]
)
def test_a_malformed_control_message_is_refused(payload: bytes) -> None:
    with pytest.raises(RequestError):
        parse_control(payload)
