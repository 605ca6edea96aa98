"""The protobuf codec: the same typed commands as the JSON codec from the same commands, the same results
into Replies as the SDKs read them, broken frames closed with 3501 and what was wrong, and a session that
speaks it end to end (connect, ping/pong, replies, pushes). Messages are built with the generated module of
the project's schema (``client_pb2``; ``tests/proto`` checks its field numbers against the upstream one)."""

from __future__ import annotations

import json
from typing import Any

import jwt
import pytest
from google.protobuf.message import Message
from resonance_worker.domain import client_pb2 as pb
from resonance_worker.domain.auth import TokenVerifier
from resonance_worker.domain.channels import ChannelRules, NamespaceOptions, default_namespaces
from resonance_worker.domain.codes import Disconnects, ErrorCode
from resonance_worker.domain.encodings import UnsupportedEncodingError, negotiate, offered_subprotocols
from resonance_worker.domain.operations import (
    Connected,
    ConnectOp,
    HistoryOp,
    RpcOp,
    StreamState,
    SubscribeOp,
)
from resonance_worker.domain.protobuf import PROTOBUF_CODEC, decode_commands, delimited, split_frame, uvarint
from resonance_worker.domain.protocol import JSON_CODEC, MAX_COMMANDS, ProtocolViolationError
from resonance_worker.domain.requests.client import Malformed
from resonance_worker.domain.results import (
    ConnectResult,
    HistoryResult,
    PresenceResult,
    PresenceStatsResult,
    RefreshResult,
    RpcResult,
    SubscribeResult,
)
from resonance_worker.domain.session import Session, SessionConfig
from resonance_worker.engines.base import ClientInfo, Publication

SECRET = "a-protobuf-secret-that-is-long-enough-for-hs256"
T0 = 1_800_000_000.0
ALICE = ClientInfo(user="alice", client="c-a", conn_info=b'{"n":1}', chan_info=None)


def frame(*messages: Message) -> bytes:
    return b"".join(delimited(m) for m in messages)


def replies(data: list[bytes]) -> list[pb.Reply]:
    """Every Reply of the frames a session queued, read as centrifuge-java reads them."""
    out = []
    for chunk in data:
        position = 0
        while position < len(chunk):
            length, shift = 0, 0
            while True:
                byte = chunk[position]
                position += 1
                length |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            out.append(pb.Reply.FromString(chunk[position : position + length]))
            position += length
    return out


# -- commands: the same typed commands as JSON's ----------------------------------------------------

SAME_COMMANDS: list[tuple[dict[str, Any], pb.Command]] = [
    (
        {
            "id": 1,
            "connect": {"token": "t", "subs": {"chat:a": {"recover": True, "offset": 7, "epoch": "e"}}},
        },
        pb.Command(
            id=1,
            connect=pb.ConnectRequest(
                token="t", subs={"chat:a": pb.SubscribeRequest(recover=True, offset=7, epoch="e")}
            ),
        ),
    ),
    (
        {"id": 2, "subscribe": {"channel": "chat:a", "token": "s", "recoverable": True, "positioned": True}},
        pb.Command(
            id=2,
            subscribe=pb.SubscribeRequest(channel="chat:a", token="s", recoverable=True, positioned=True),
        ),
    ),
    (
        {
            "id": 3,
            "subscribe": {"channel": "chat:a", "recover": True, "offset": 2**64 - 1, "epoch": "x", "flag": 2},
        },
        pb.Command(
            id=3,
            subscribe=pb.SubscribeRequest(
                channel="chat:a", recover=True, offset=2**64 - 1, epoch="x", flag=2
            ),
        ),
    ),
    (
        {"id": 4, "unsubscribe": {"channel": "chat:a"}},
        pb.Command(id=4, unsubscribe=pb.UnsubscribeRequest(channel="chat:a")),
    ),
    (
        {"id": 5, "publish": {"channel": "chat:a", "data": {"text": "hi"}}},
        pb.Command(id=5, publish=pb.PublishRequest(channel="chat:a", data=b'{"text":"hi"}')),
    ),
    (
        {"id": 6, "presence": {"channel": "chat:a"}},
        pb.Command(id=6, presence=pb.PresenceRequest(channel="chat:a")),
    ),
    (
        {"id": 7, "presence_stats": {"channel": "chat:a"}},
        pb.Command(id=7, presence_stats=pb.PresenceStatsRequest(channel="chat:a")),
    ),
    (
        {
            "id": 8,
            "history": {
                "channel": "chat:a",
                "limit": 5,
                "since": {"offset": 3, "epoch": "e"},
                "reverse": True,
            },
        },
        pb.Command(
            id=8,
            history=pb.HistoryRequest(
                channel="chat:a", limit=5, since=pb.StreamPosition(offset=3, epoch="e"), reverse=True
            ),
        ),
    ),
    ({"id": 9, "ping": {}}, pb.Command(id=9, ping=pb.PingRequest())),
    (
        {"id": 10, "rpc": {"method": "state.report", "data": [1, 2]}},
        pb.Command(id=10, rpc=pb.RPCRequest(method="state.report", data=b"[1,2]")),
    ),
    ({"id": 0, "send": {"data": {"a": 1}}}, pb.Command(send=pb.SendRequest(data=b'{"a":1}'))),
    ({"id": 11, "refresh": {"token": "r"}}, pb.Command(id=11, refresh=pb.RefreshRequest(token="r"))),
    (
        {"id": 12, "sub_refresh": {"channel": "chat:a", "token": "s"}},
        pb.Command(id=12, sub_refresh=pb.SubRefreshRequest(channel="chat:a", token="s")),
    ),
]


@pytest.mark.parametrize(
    ("as_json", "as_protobuf"), SAME_COMMANDS, ids=lambda v: next(iter(v), "") if isinstance(v, dict) else ""
)
def test_each_command_decodes_to_what_json_gives(as_json: dict[str, Any], as_protobuf: pb.Command) -> None:
    assert decode_commands(frame(as_protobuf)) == JSON_CODEC.decode(json.dumps(as_json))


def test_several_commands_per_frame_and_the_pong() -> None:
    commands = decode_commands(
        frame(pb.Command(id=1, ping=pb.PingRequest()), pb.Command(), pb.Command(id=2, ping=pb.PingRequest()))
    )
    assert [c.method for c in commands] == ["ping", "", "ping"]
    assert commands[1].is_pong
    assert decode_commands(b"\x00")[0].is_pong  # centrifuge-java's pong: one zero byte


def test_refused_fields_are_malformed_like_json() -> None:
    (publish,) = decode_commands(frame(pb.Command(id=1, publish=pb.PublishRequest(channel="chat:a"))))
    assert isinstance(publish.request, Malformed) and publish.request.error.code == ErrorCode.BAD_REQUEST
    (rpc,) = decode_commands(frame(pb.Command(id=2, rpc=pb.RPCRequest(method="m", data=b"\xff\x00raw"))))
    assert isinstance(rpc.request, Malformed) and rpc.request.error.message == "rpc data must be JSON"
    (subscribe,) = decode_commands(frame(pb.Command(id=3, subscribe=pb.SubscribeRequest(channel=""))))
    assert isinstance(subscribe.request, Malformed) and subscribe.request.error.fatal


def test_unknown_fields_are_skipped() -> None:
    known = pb.Command(id=1, presence=pb.PresenceRequest(channel="chat:a")).SerializeToString()
    extra = known + b"\xa8\x06\x05"  # field 101, varint 5: a field of a newer SDK
    assert decode_commands(uvarint(len(extra)) + extra) == decode_commands(uvarint(len(known)) + known)


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        (b"", "empty frame"),
        (b"\x85", "truncated length prefix"),
        (b"\xff\xff\xff\xff\xff\x01", "length prefix over 32 bits"),
        (b"\x05\x08\x01", "a command of 5 bytes runs past the end of the frame (2 left)"),
        (b"\x03\x08\x01\x22", "a command protobuf cannot parse"),
        (b"\x02\x0a\x00", "Command.id has the wrong wire type (2)"),
        (b"\x06\x08\x01\x2a\x02\x08\x01", "subscribe.channel has the wrong wire type (0)"),
        (frame(pb.Command(id=7)), "command without a method"),
        (frame(pb.Command(ping=pb.PingRequest())), "only send may have no id"),
        (b"\x00" * (MAX_COMMANDS + 1), f"more than {MAX_COMMANDS} commands in one frame"),
        ("{}", "a text frame on a protobuf connection"),
    ],
)
def test_broken_frames_name_what_was_wrong(data: bytes | str, detail: str) -> None:
    with pytest.raises(ProtocolViolationError) as caught:
        decode_commands(data)
    assert str(caught.value) == detail


def test_ten_thousand_tiny_commands_close_that_connection_with_3501() -> None:
    for codec, data in (
        (PROTOBUF_CODEC, frame(*[pb.Command(id=i + 1, ping=pb.PingRequest()) for i in range(10_000)])),
        (JSON_CODEC, "\n".join(json.dumps({"id": i + 1, "ping": {}}) for i in range(10_000))),
    ):
        session = connected(codec)
        session.receive_data(data, T0)
        assert session.close_reason is not None
        assert (session.close_reason.code, session.close_reason.reason) == (
            3501,
            f"bad request: more than {MAX_COMMANDS} commands in one frame",
        )
        assert session.data_to_send() == []  # nothing of the frame was run


def test_split_frame_keeps_every_message() -> None:
    messages = [b"", b"a", b"b" * 300]
    assert split_frame(b"".join(uvarint(len(m)) + m for m in messages)) == messages


# -- results: Replies as the SDK reads them ---------------------------------------------------------


def test_results_and_errors_encode_into_their_reply_fields() -> None:
    pub = Publication(b"\x00binary", info=ALICE, offset=3, tags={"k": "v"})
    sub = SubscribeResult(
        ttl=30, positioned=True, recoverable=True, recovered=True, epoch="e", offset=3, publications=[pub]
    )
    (connect,) = replies(
        [PROTOBUF_CODEC.reply(1, ConnectResult("c1", "v1", "n1", ping=25, ttl=60, subs={"#alice": sub}))]
    )
    assert (connect.id, connect.connect.client, connect.connect.ping, connect.connect.pong) == (
        1,
        "c1",
        25,
        True,
    )
    assert (connect.connect.expires, connect.connect.ttl, connect.connect.node) == (True, 60, "n1")
    personal = connect.connect.subs["#alice"]
    assert (personal.recovered, personal.epoch, personal.offset, personal.expires) == (True, "e", 3, True)
    assert personal.publications[0].data == b"\x00binary" and personal.publications[0].tags == {"k": "v"}
    assert personal.publications[0].info.conn_info == b'{"n":1}'
    (history,) = replies([PROTOBUF_CODEC.reply(2, HistoryResult([pub], "e", 3))])
    assert history.history.publications[0].offset == 3
    (presence,) = replies([PROTOBUF_CODEC.reply(3, PresenceResult({"c-a": ALICE}))])
    assert presence.presence.presence["c-a"].user == "alice"
    (stats,) = replies([PROTOBUF_CODEC.reply(4, PresenceStatsResult(2, 1))])
    assert (stats.presence_stats.num_clients, stats.presence_stats.num_users) == (2, 1)
    (rpc,) = replies([PROTOBUF_CODEC.reply(5, RpcResult(b'{"ok":true}'))])
    assert rpc.rpc.data == b'{"ok":true}'
    (refresh,) = replies([PROTOBUF_CODEC.reply(6, RefreshResult("c1", "v1", 10))])
    assert (refresh.refresh.expires, refresh.refresh.ttl) == (True, 10)
    (error,) = replies([PROTOBUF_CODEC.error(7, ErrorCode.TOO_MANY_REQUESTS)])
    assert (error.id, error.error.code, error.error.message, error.error.temporary) == (
        7,
        111,
        "too many requests",
        True,
    )


def test_pushes_carry_the_channel_and_never_the_numeric_id() -> None:
    pub = Publication(b'{"a":1}', info=ALICE, offset=9)
    (push,) = replies([PROTOBUF_CODEC.publication_push("chat:a", pub)])
    assert (push.id, push.push.channel, push.push.pub.data) == (0, "chat:a", b'{"a":1}')
    assert [field.number for field, _ in push.push.ListFields()] == [2, 4]  # channel, pub: no Push.id (1)
    (join,) = replies([PROTOBUF_CODEC.join_push("chat:a", ALICE)])
    assert join.push.join.info.client == "c-a"
    (leave,) = replies([PROTOBUF_CODEC.leave_push("chat:a", ALICE)])
    assert leave.push.leave.info.user == "alice"
    (unsub,) = replies([PROTOBUF_CODEC.unsubscribe_push("chat:a", 2500, "insufficient state")])
    assert (unsub.push.unsubscribe.code, unsub.push.unsubscribe.reason) == (2500, "insufficient state")


def test_json_cannot_carry_bytes_that_are_not_json() -> None:
    binary = Publication(b"\xff\x00", info=None, offset=1)
    assert JSON_CODEC.publication_push("chat:a", binary) is None
    assert PROTOBUF_CODEC.publication_push("chat:a", binary) is not None
    text = Publication(b'"json"', info=None, offset=2)
    assert json.loads(JSON_CODEC.publication_push("chat:a", text) or b"") == {
        "push": {"channel": "chat:a", "pub": {"data": "json", "offset": 2}}
    }


# -- a session speaking protobuf -------------------------------------------------------------------


def make(codec: Any = PROTOBUF_CODEC, config: SessionConfig | None = None) -> Session:
    namespaces = default_namespaces()
    namespaces["open"] = NamespaceOptions(
        allow_subscribe_for_client=True,
        allow_publish_for_client=True,
        history_size=10,
        history_ttl_seconds=60,
        allow_history_for_client=True,
        allow_recovery=True,
    )
    return Session(
        "c1",
        config=config or SessionConfig(personal_channel=False, ping_interval=25, pong_timeout=8),
        rules=ChannelRules(namespaces),
        verifier=TokenVerifier(hmac_secret=SECRET),
        now=T0,
        codec=codec,
    )


def encoded(codec: Any, command: dict[str, Any], message: pb.Command) -> str | bytes:
    return json.dumps(command) if codec is JSON_CODEC else frame(message)


def connected(codec: Any = PROTOBUF_CODEC, sub: str = "alice") -> Session:
    session = make(codec)
    token = jwt.encode({"sub": sub}, SECRET, "HS256")
    session.receive_data(
        encoded(
            codec,
            {"id": 1, "connect": {"token": token}},
            pb.Command(id=1, connect=pb.ConnectRequest(token=token)),
        ),
        T0,
    )
    (op,) = session.effects()
    assert isinstance(op, ConnectOp)
    session.complete(op, Connected({}), T0)
    session.data_to_send()
    return session


def test_a_protobuf_session_connects_pings_and_takes_the_pong() -> None:
    session = make()
    token = jwt.encode({"sub": "alice"}, SECRET, "HS256")
    session.receive_data(frame(pb.Command(id=1, connect=pb.ConnectRequest(token=token))), T0)
    (op,) = session.effects()
    session.complete(op, Connected({}), T0)
    (reply,) = replies(session.data_to_send())
    assert (reply.id, reply.connect.client, reply.connect.ping, reply.connect.pong) == (1, "c1", 25, True)
    session.tick(T0 + 25)
    assert session.data_to_send() == [b"\x00"]  # the ping: an empty Reply
    session.receive_data(b"\x00", T0 + 26)  # the pong: an empty Command
    session.tick(T0 + 34)
    assert not session.closed
    session.receive_data(b"\x00", T0 + 35)  # a pong nobody asked for
    assert (
        session.close_reason is not None
        and session.close_reason.reason == "bad request: a pong without a ping"
    )


def test_a_protobuf_session_subscribes_with_recovery_and_answers_history() -> None:
    session = connected()
    session.receive_data(
        frame(
            pb.Command(
                id=2,
                subscribe=pb.SubscribeRequest(
                    channel="open:a", recover=True, offset=1, epoch="e", recoverable=True
                ),
            ),
            pb.Command(id=3, history=pb.HistoryRequest(channel="open:a", limit=10)),
        ),
        T0,
    )
    (sub_op,) = session.effects()
    assert isinstance(sub_op, SubscribeOp) and sub_op.since == (1, "e")
    missed = [Publication(b"\x01raw", info=ALICE, offset=2)]
    session.complete(sub_op, StreamState(2, "e", missed), T0)
    (history_op,) = session.effects()
    assert isinstance(history_op, HistoryOp)
    session.complete(history_op, HistoryResult(missed, "e", 2), T0)
    subscribed, history = replies(session.data_to_send())
    assert (subscribed.id, subscribed.subscribe.recovered, subscribed.subscribe.publications[0].data) == (
        2,
        True,
        b"\x01raw",
    )
    assert (history.id, history.history.offset) == (3, 2)


def test_rpc_data_goes_to_the_handlers_as_json() -> None:
    session = connected()
    session.receive_data(
        frame(pb.Command(id=2, rpc=pb.RPCRequest(method="state.report", data=b'{"state":"calm"}'))), T0
    )
    (op,) = session.effects()
    assert isinstance(op, RpcOp) and op.data == b'{"state":"calm"}'


@pytest.mark.parametrize("codec", [JSON_CODEC, PROTOBUF_CODEC], ids=["json", "protobuf"])
@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        (None, (3501, "bad request: no token (in connect or ?token=) and anonymous connections are off")),
        (
            {"sub": ""},
            (3507, "permission denied: the token's sub is empty and anonymous connections are off"),
        ),
        ({"sub": "alice", "exp": "soon"}, (3500, "invalid token: exp must be a number")),
    ],
)
def test_refusals_say_what_was_wrong_in_both_encodings(
    codec: Any, claims: dict[str, Any] | None, expected: tuple[int, str]
) -> None:
    session = make(codec)
    token = "" if claims is None else jwt.encode(claims, SECRET, "HS256")
    session.receive_data(
        encoded(
            codec,
            {"id": 1, "connect": {"token": token}},
            pb.Command(id=1, connect=pb.ConnectRequest(token=token)),
        ),
        T0,
    )
    assert session.close_reason is not None
    assert (session.close_reason.code, session.close_reason.reason) == expected
    assert SECRET not in session.close_reason.reason


def test_a_json_reader_of_binary_history_is_closed_with_3506() -> None:
    session = connected(JSON_CODEC)
    session.receive_data(json.dumps({"id": 2, "history": {"channel": "open:a", "limit": 10}}), T0)
    (op,) = session.effects()
    session.complete(op, HistoryResult([Publication(b"\xff\x00", info=None, offset=1)], "e", 1), T0)
    assert session.close_reason == Disconnects.INAPPROPRIATE_PROTOCOL
    assert session.close_reason.reason == "inappropriate protocol"


# -- negotiation ------------------------------------------------------------------------------------


def test_negotiation_follows_centrifuge() -> None:
    assert negotiate(["centrifuge-protobuf"], {}).codec is PROTOBUF_CODEC
    assert negotiate(["centrifuge-protobuf"], {}).subprotocol == "centrifuge-protobuf"
    assert (
        negotiate(["x", "centrifuge-json", "centrifuge-protobuf"], {}).codec is JSON_CODEC
    )  # client's order
    assert negotiate([], {}).codec is JSON_CODEC
    assert negotiate([], {"format": "protobuf"}).codec is PROTOBUF_CODEC
    assert negotiate([], {"cf_protocol": "protobuf"}).codec is PROTOBUF_CODEC
    assert negotiate([], {"format": "json"}).subprotocol is None
    assert offered_subprotocols(["a, centrifuge-protobuf", "b"]) == ["a", "centrifuge-protobuf", "b"]


@pytest.mark.parametrize(
    ("offered", "query", "message"),
    [
        (
            ["mqtt"],
            {},
            "no subprotocol offered ('mqtt') is spoken here; "
            "this worker speaks centrifuge-json, centrifuge-protobuf",
        ),
        ([], {"format": "xml"}, "format='xml' is not spoken here; use json or protobuf"),
    ],
)
def test_a_handshake_asking_only_for_what_is_not_spoken_is_refused(
    offered: list[str], query: dict[str, str], message: str
) -> None:
    with pytest.raises(UnsupportedEncodingError) as caught:
        negotiate(offered, query)
    assert str(caught.value) == message
