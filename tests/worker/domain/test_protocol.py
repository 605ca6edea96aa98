"""Frames of the Centrifuge JSON protocol and the channel rules."""

from __future__ import annotations

import json

import pytest
from resonance_worker.domain.channels import ChannelRules, NamespaceOptions, default_namespaces
from resonance_worker.domain.codes import Disconnect, Disconnects, ErrorCode, UnsubscribeCode
from resonance_worker.domain.protocol import (
    ProtocolViolationError,
    encode_disconnect_push,
    encode_error,
    encode_join_push,
    encode_leave_push,
    encode_message_push,
    encode_publication_push,
    parse_frame,
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
