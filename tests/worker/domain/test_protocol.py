"""Frames of the Centrifuge JSON protocol and the channel rules."""

from __future__ import annotations

import json
from typing import Any, get_args

import pytest
from resonance_worker.domain.channels import ChannelRules, NamespaceOptions, default_namespaces
from resonance_worker.domain.codes import Disconnect, Disconnects, ErrorCode, UnsubscribeCode
from resonance_worker.domain.protocol import (
    JSON_CODEC,
    RESULTS,
    ProtocolViolationError,
    decode_commands,
    encode_disconnect_push,
    encode_error,
    encode_join_push,
    encode_leave_push,
    encode_message_push,
    encode_publication_push,
    parse_frame,
)
from resonance_worker.domain.requests.client import Malformed, PingRequest, SendRequest, UnsubscribeRequest
from resonance_worker.domain.results import (
    ConnectResult,
    HistoryResult,
    PingResult,
    PresenceResult,
    PresenceStatsResult,
    PublishResult,
    RefreshResult,
    Result,
    RpcResult,
    SubRefreshResult,
    SubscribeResult,
    UnsubscribeResult,
)
from resonance_worker.engines.base import ClientInfo, Publication


def test_parse_several_commands_and_pong() -> None:
    commands = parse_frame('{"id":1,"connect":{"token":"t"}}\n{}\n{"send":{"data":1}}\n')
    assert [(c.id, c.method) for c in commands] == [(1, "connect"), (0, ""), (0, "send")]
    assert commands[1].is_pong
    assert commands[0].params == {"token": "t"}


@pytest.mark.parametrize(
    "frame",
    [
        "",
        "\n",
        "{",
        "[]",
        '{"id": -1, "ping": {}}',
        '{"id": true, "ping": {}}',
        '{"id": 1}',
        '{"ping": {}}',
        '{"id": 1, "ping": 3}',
    ],
)
def test_bad_frames(frame: str) -> None:
    with pytest.raises(ProtocolViolationError):
        parse_frame(frame)


def test_pushes_are_encoded_as_the_sdk_reads_them() -> None:
    info = ClientInfo("u", "c", conn_info=b'{"n":1}', chan_info=b"[2]")
    pub = Publication(data=b'{"a":1}', offset=5, info=info, tags={"k": "v"})
    assert json.loads(encode_publication_push("ch", pub)) == {
        "push": {
            "channel": "ch",
            "pub": {
                "data": {"a": 1},
                "offset": 5,
                "tags": {"k": "v"},
                "info": {"user": "u", "client": "c", "conn_info": {"n": 1}, "chan_info": [2]},
            },
        }
    }
    assert json.loads(encode_join_push("ch", info))["push"]["join"]["info"]["user"] == "u"
    assert json.loads(encode_leave_push("ch", info))["push"]["leave"]["info"]["client"] == "c"
    assert json.loads(encode_message_push(b'"hi"')) == {"push": {"message": {"data": "hi"}}}
    assert json.loads(encode_disconnect_push(3001, "shutdown")) == {
        "push": {"disconnect": {"code": 3001, "reason": "shutdown"}}
    }
    assert json.loads(encode_error(3, ErrorCode.TOKEN_EXPIRED, "custom")) == {
        "id": 3,
        "error": {"code": 109, "message": "custom"},
    }


def test_codes_match_centrifuge_ranges() -> None:
    assert Disconnects.SHUTDOWN.reconnect and Disconnects.NO_PONG.reconnect
    assert not Disconnects.INVALID_TOKEN.reconnect and not Disconnects.CONNECTION_LIMIT.reconnect
    assert not Disconnect(4500, "app").reconnect and Disconnect(4000, "app").reconnect
    assert len({d.code for d in Disconnects.all()}) == len(Disconnects.all())
    assert ErrorCode.TOO_MANY_REQUESTS.temporary and not ErrorCode.PERMISSION_DENIED.temporary
    assert UnsubscribeCode.INSUFFICIENT_STATE.reason == "insufficient state"


def test_channel_rules() -> None:
    rules = ChannelRules(default_namespaces(), max_channel_length=20)
    assert rules.options("chat:x") == default_namespaces()["chat"]
    assert rules.options("nope:x") is None
    assert rules.options("plain") == NamespaceOptions()
    assert ChannelRules.namespace_of("a:b:c") == "a"
    assert ChannelRules.is_private("chat:$x") and ChannelRules.is_private("$x")
    assert not ChannelRules.is_private("chat:x$")
    assert ChannelRules.allowed_users("dm:#a,b") == frozenset({"a", "b"})
    assert ChannelRules.allowed_users("dm:x") is None
    assert ChannelRules.personal_channel("u") == "personal:#u"
    assert rules.valid_name("chat:x") and not rules.valid_name("x" * 21) and not rules.valid_name("")
    assert default_namespaces()["chat"].has_history and not default_namespaces()["typing"].has_history


# -- the codec: typed commands in, typed results out -------------------------------------------


def test_decode_commands_types_each_request_and_keeps_a_malformed_one_in_its_place() -> None:
    commands = decode_commands(
        '{"id":1,"history":{"channel":"c","limit":true}}\n{}\n{"id":2,"ping":{}}\n{"send":{"data":1}}'
    )
    assert [(c.id, c.method) for c in commands] == [(1, "history"), (0, ""), (2, "ping"), (0, "send")]
    malformed = commands[0].request
    assert isinstance(malformed, Malformed) and malformed.error.code is ErrorCode.BAD_REQUEST
    assert commands[1].is_pong
    assert commands[2].request == PingRequest() and commands[3].request == SendRequest(b"1")
    assert JSON_CODEC.decode('{"id":3,"unsubscribe":{"channel":"c"}}')[0].request == UnsubscribeRequest("c")
    with pytest.raises(ProtocolViolationError):
        JSON_CODEC.decode("[]")


def _reply(result: Any) -> Any:
    return json.loads(JSON_CODEC.reply(4, result))


def test_every_result_type_has_an_encoding() -> None:
    assert set(RESULTS) == set(get_args(Result))


def test_results_are_encoded_as_the_sdk_reads_them() -> None:
    info = ClientInfo("u", "c", conn_info=b'{"n":1}')
    pub = Publication(data=b"[1]", offset=3, info=None)
    sub = SubscribeResult(
        ttl=9,
        positioned=True,
        recoverable=True,
        was_recovering=True,
        recovered=True,
        epoch="e",
        offset=2,
        publications=[pub],
    )
    assert _reply(sub) == {
        "id": 4,
        "subscribe": {
            "expires": True,
            "ttl": 9,
            "positioned": True,
            "recoverable": True,
            "was_recovering": True,
            "recovered": True,
            "epoch": "e",
            "offset": 2,
            "publications": [{"data": [1], "offset": 3}],
        },
    }
    assert _reply(SubscribeResult(positioned=True)) == {
        "id": 4,
        "subscribe": {"positioned": True, "epoch": "", "offset": 0},
    }
    assert JSON_CODEC.reply(4, SubscribeResult()) == b'{"id":4,"subscribe":{}}'
    assert _reply(ConnectResult("c1", "v", "n1", 25, 60, {"a": SubscribeResult()}))["connect"] == {
        "client": "c1",
        "version": "v",
        "node": "n1",
        "ping": 25,
        "pong": True,
        "expires": True,
        "ttl": 60,
        "subs": {"a": {}},
    }
    assert _reply(ConnectResult("c1", "v"))["connect"] == {"client": "c1", "version": "v"}
    assert _reply(RefreshResult("c1", "v", 5))["refresh"] == {
        "client": "c1",
        "version": "v",
        "expires": True,
        "ttl": 5,
    }
    assert _reply(SubRefreshResult())["sub_refresh"] == {}
    assert _reply(HistoryResult([pub], "e", 3))["history"] == {
        "epoch": "e",
        "offset": 3,
        "publications": [{"data": [1], "offset": 3}],
    }
    assert _reply(HistoryResult([], "e", 0))["history"] == {"epoch": "e", "offset": 0}
    assert _reply(PresenceResult({"c": info}))["presence"] == {
        "presence": {"c": {"user": "u", "client": "c", "conn_info": {"n": 1}}}
    }
    assert _reply(PresenceStatsResult(2, 1))["presence_stats"] == {"num_clients": 2, "num_users": 1}
    assert _reply(RpcResult(b'{"x":1}'))["rpc"] == {"data": {"x": 1}}
    assert _reply(RpcResult())["rpc"] == {}
    for empty, method in (
        (PublishResult(), "publish"),
        (UnsubscribeResult(), "unsubscribe"),
        (PingResult(), "ping"),
    ):
        assert _reply(empty) == {"id": 4, method: {}}
    assert json.loads(JSON_CODEC.error(4, ErrorCode.INTERNAL)) == {
        "id": 4,
        "error": {"code": 100, "message": "internal", "temporary": True},
    }
    assert json.loads(JSON_CODEC.unsubscribe_push("ch", 2500, "insufficient state")) == {
        "push": {"channel": "ch", "unsubscribe": {"code": 2500, "reason": "insufficient state"}}
    }
    assert JSON_CODEC.ping == b"{}"
