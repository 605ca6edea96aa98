"""The per-connection protocol state machine, driven without an event loop:
frames in, frames and operations out, time passed in."""

from __future__ import annotations

import json
from typing import Any

import jwt
import pytest
from resonance_worker.domain.auth import TokenVerifier
from resonance_worker.domain.channels import ChannelRules, NamespaceOptions, default_namespaces
from resonance_worker.domain.codes import Disconnects, ErrorCode
from resonance_worker.domain.operations import (
    Connected,
    ConnectOp,
    Failed,
    HistoryOp,
    PresenceOp,
    PresenceRefreshOp,
    PresenceStatsOp,
    PublishOp,
    RpcOp,
    SendOp,
    StreamState,
    SubscribeOp,
    UnsubscribeOp,
)
from resonance_worker.domain.protocol import encode_publication_push
from resonance_worker.domain.results import PresenceStatsResult, PublishResult
from resonance_worker.domain.session import Session, SessionConfig
from resonance_worker.engines.base import ClientInfo, Publication

SECRET = "a-test-secret-that-is-long-enough-for-hs256"
T0 = 1_800_000_000.0


def token(sub: str = "alice", **claims: Any) -> str:
    return jwt.encode({"sub": sub, **claims}, SECRET, "HS256")


def make(config: SessionConfig | None = None, **kw: Any) -> Session:
    namespaces = default_namespaces()
    namespaces["open"] = NamespaceOptions(
        allow_subscribe_for_client=True,
        allow_subscribe_for_anonymous=True,
        allow_publish_for_client=True,
        allow_publish_for_anonymous=True,
        presence=True,
        allow_presence_for_client=True,
        history_size=10,
        history_ttl_seconds=60,
        allow_history_for_client=True,
        allow_recovery=True,
        allow_positioning=True,
    )
    return Session(
        "c1",
        config=config or SessionConfig(personal_channel=False),
        rules=ChannelRules(namespaces),
        verifier=TokenVerifier(hmac_secret=SECRET),
        now=T0,
        **kw,
    )


def send(session: Session, *commands: dict[str, Any], now: float = T0) -> None:
    session.receive_data("\n".join(json.dumps(c) for c in commands), now)


def replies(session: Session) -> list[dict[str, Any]]:
    out = []
    for frame in session.data_to_send():
        out.extend(json.loads(line) for line in frame.decode().split("\n"))
    return out


def connected(session: Session | None = None, **claims: Any) -> Session:
    session = session or make()
    send(session, {"id": 1, "connect": {"token": token(**claims)}})
    (op,) = session.effects()
    assert isinstance(op, ConnectOp)
    session.complete(op, Connected({}), T0)
    reply = replies(session)[0]
    assert reply["id"] == 1 and reply["connect"]["client"] == "c1"
    return session


def pub(offset: int, text: str = "x") -> Publication:
    return Publication(data=json.dumps({"t": text}).encode(), offset=offset, info=ClientInfo("u", "c"))


def subscribe(
    session: Session, channel: str, stream: StreamState, cmd_id: int = 2, **params: Any
) -> dict[str, Any]:
    send(session, {"id": cmd_id, "subscribe": {"channel": channel, **params}})
    (op,) = session.effects()
    assert isinstance(op, SubscribeOp)
    assert session.complete(op, stream, T0)
    (reply,) = replies(session)
    return reply


# -- connecting ------------------------------------------------------------------


def test_connect_reply_has_ping_pong_and_expiry() -> None:
    session = make()
    send(session, {"id": 1, "connect": {"token": token(exp=T0 + 100), "name": "python"}})
    (op,) = session.effects()
    assert isinstance(op, ConnectOp) and op.user == "alice"
    session.complete(op, Connected({}), T0)
    (reply,) = replies(session)
    assert reply == {
        "id": 1,
        "connect": {"client": "c1", "version": "", "ping": 25, "pong": True, "expires": True, "ttl": 100},
    }


def test_url_token_is_used_when_the_command_has_none() -> None:
    session = make(url_token=token("bob"))
    send(session, {"id": 1, "connect": {}})
    (op,) = session.effects()
    assert isinstance(op, ConnectOp) and op.user == "bob"


@pytest.mark.parametrize(
    ("connect", "code"),
    [
        ({"token": jwt.encode({"sub": "x"}, None, "none")}, 3500),
        ({"token": jwt.encode({"sub": "x"}, "wrong-secret-but-long-enough-for-hs256!", "HS256")}, 3500),
        ({}, 3501),
        ({"token": 5}, 3501),
        ({"token": token("")}, 3507),
    ],
    ids=["alg-none", "wrong-key", "no-token", "token-not-string", "anonymous-token"],
)
def test_connect_refusals_close_with_codes(connect: dict[str, Any], code: int) -> None:
    session = make()
    send(session, {"id": 1, "connect": connect})
    assert session.closed and session.close_reason is not None
    assert session.close_reason.code == code


def test_expired_token_gets_error_109_and_the_connection_is_unusable() -> None:
    session = make()
    send(session, {"id": 1, "connect": {"token": token(exp=T0 - 1)}})
    assert replies(session) == [{"id": 1, "error": {"code": 109, "message": "token expired"}}]
    assert not session.closed
    send(session, {"id": 2, "connect": {"token": token()}})
    assert session.close_reason == Disconnects.BAD_REQUEST


def test_not_yet_valid_token_is_109_too() -> None:
    session = make()
    send(session, {"id": 1, "connect": {"token": token(nbf=T0 + 30)}})
    assert replies(session)[0]["error"]["code"] == 109


def test_anonymous_connection_only_when_configured() -> None:
    session = make(SessionConfig(allow_anonymous=True))
    send(session, {"id": 1, "connect": {}})
    (op,) = session.effects()
    assert isinstance(op, ConnectOp) and op.user == ""


def test_commands_before_connect_and_garbage_are_bad_requests() -> None:
    for frame in [
        '{"id": 1, "publish": {"channel": "a", "data": 1}}',
        "not json",
        "[1]",
        "",
        '{"id": 3}',
        '{"id": "x", "connect": {}}',
        '{"id": 1, "connect": []}',
    ]:
        session = make()
        session.receive_data(frame, T0)
        assert session.close_reason == Disconnects.BAD_REQUEST, frame
    session = make()
    session.receive_data(b'{"id": 1, "connect": {}}', T0)  # a binary frame on a JSON connection
    assert session.close_reason is not None
    assert (session.close_reason.code, session.close_reason.reason) == (
        3501,
        "bad request: a binary frame on a JSON connection (the protobuf subprotocol was not asked for)",
    )


def test_stale_connection_is_closed_at_the_connect_deadline() -> None:
    session = make(SessionConfig(connect_timeout=10))
    assert session.next_deadline() == T0 + 10
    session.tick(T0 + 9)
    assert not session.closed
    session.tick(T0 + 10)
    assert session.close_reason == Disconnects.STALE
    assert session.next_deadline() is None


def test_server_side_channels_and_personal_channel() -> None:
    session = make(SessionConfig())
    send(
        session,
        {
            "id": 1,
            "connect": {
                "token": token(channels=["chat:lobby"]),
                "subs": {"chat:lobby": {"recover": True, "offset": 1, "epoch": "e"}},
            },
        },
    )
    (op,) = session.effects()
    assert isinstance(op, ConnectOp)
    assert [s.channel for s in op.subscriptions] == ["chat:lobby", "personal:#alice"]
    lobby = op.subscriptions[0]
    assert lobby.server_side and lobby.since == (1, "e")
    session.complete(
        op,
        Connected({"chat:lobby": StreamState(2, "e", [pub(2)]), "personal:#alice": StreamState(0, "p")}),
        T0,
    )
    (reply,) = replies(session)
    subs = reply["connect"]["subs"]
    assert subs["chat:lobby"]["recovered"] is True
    assert subs["chat:lobby"]["publications"][0]["offset"] == 2
    assert subs["personal:#alice"] == {"positioned": True, "recoverable": True, "epoch": "p", "offset": 0}


def test_connect_with_unknown_server_side_channel_is_error_102() -> None:
    session = make()
    send(session, {"id": 1, "connect": {"token": token(channels=["nope:x"])}})
    assert replies(session)[0]["error"]["code"] == 102


def test_too_many_server_side_channels_closes_3505() -> None:
    session = make(SessionConfig(max_channels=1, personal_channel=False))
    send(session, {"id": 1, "connect": {"token": token(channels=["chat:a", "chat:b"])}})
    assert session.close_reason == Disconnects.CHANNEL_LIMIT


def test_connection_limit_rejection_closes() -> None:
    session = make()
    send(session, {"id": 1, "connect": {"token": token()}})
    (op,) = session.effects()
    session.complete(op, Failed(Disconnects.CONNECTION_LIMIT), T0)
    assert session.close_reason == Disconnects.CONNECTION_LIMIT


# -- ping, pong, expiry -------------------------------------------------------------


def test_ping_pong_and_no_pong() -> None:
    session = connected(make(SessionConfig(ping_interval=25, pong_timeout=8, personal_channel=False)))
    assert session.next_deadline() == T0 + 25
    session.tick(T0 + 25)
    assert session.data_to_send() == [b"{}"]
    assert session.next_deadline() == T0 + 33
    session.receive_data("{}", T0 + 26)
    assert session.next_deadline() == T0 + 50
    session.tick(T0 + 50)
    session.tick(T0 + 58)
    assert session.close_reason == Disconnects.NO_PONG


def test_unexpected_pong_is_a_bad_request() -> None:
    session = connected()
    session.receive_data("{}", T0)
    assert session.close_reason == Disconnects.BAD_REQUEST


def test_connection_expires_unless_refreshed() -> None:
    config = SessionConfig(expired_close_delay=5, ping_interval=0, personal_channel=False)
    session = connected(make(config), exp=T0 + 10)
    assert session.next_deadline() == T0 + 15
    send(session, {"id": 2, "refresh": {"token": token(exp=T0 + 100)}}, now=T0 + 9)
    assert replies(session) == [
        {"id": 2, "refresh": {"client": "c1", "version": "", "expires": True, "ttl": 91}}
    ]
    session.tick(T0 + 15)
    assert not session.closed
    session.tick(T0 + 105)
    assert session.close_reason == Disconnects.EXPIRED


@pytest.mark.parametrize(
    ("refresh", "reason"),
    [
        ({"token": token("mallory")}, Disconnects.INVALID_TOKEN),
        ({"token": token(exp=T0 - 5)}, Disconnects.EXPIRED),
        ({"token": "junk"}, Disconnects.INVALID_TOKEN),
        ({}, Disconnects.BAD_REQUEST),
    ],
    ids=["other-user", "expired", "junk", "missing"],
)
def test_bad_refresh_closes(refresh: dict[str, Any], reason: Any) -> None:
    session = connected()
    send(session, {"id": 2, "refresh": refresh})
    assert session.close_reason == reason


# -- subscriptions, recovery, positioning ------------------------------------------------


def test_subscribe_reply_and_positioned_delivery() -> None:
    session = connected()
    reply = subscribe(session, "chat:room", StreamState(3, "ep"))
    assert reply == {
        "id": 2,
        "subscribe": {"positioned": True, "recoverable": True, "epoch": "ep", "offset": 3},
    }
    frame4 = encode_publication_push("chat:room", pub(4))
    session.deliver_publication("chat:room", frame4, 4, "ep")
    session.deliver_publication("chat:room", frame4, 4, "ep")  # duplicate: dropped
    assert session.data_to_send() == [frame4]
    # A gap: the client is told to resubscribe (and recover).
    session.deliver_publication("chat:room", encode_publication_push("chat:room", pub(6)), 6, "ep")
    (push,) = replies(session)
    assert push == {
        "push": {"channel": "chat:room", "unsubscribe": {"code": 2500, "reason": "insufficient state"}}
    }
    (op,) = session.effects()
    assert isinstance(op, UnsubscribeOp) and op.channel == "chat:room"
    assert not session.subscribed_to("chat:room")


def test_epoch_change_is_insufficient_state() -> None:
    session = connected()
    subscribe(session, "chat:room", StreamState(3, "ep"))
    session.deliver_publication("chat:room", b"{}", 4, "other")
    assert replies(session)[0]["push"]["unsubscribe"]["code"] == 2500


def test_recovery_merges_buffered_publications_in_order() -> None:
    session = connected()
    send(
        session, {"id": 2, "subscribe": {"channel": "chat:room", "recover": True, "offset": 1, "epoch": "ep"}}
    )
    (op,) = session.effects()
    assert isinstance(op, SubscribeOp) and op.since == (1, "ep")
    # While the engine is read, publications 3 and 4 arrive live.
    frame3 = encode_publication_push("chat:room", pub(3))
    frame4 = encode_publication_push("chat:room", pub(4))
    session.deliver_publication("chat:room", frame3, 3, "ep")
    session.deliver_publication("chat:room", frame4, 4, "ep")
    assert session.data_to_send() == []
    assert session.complete(op, StreamState(3, "ep", [pub(2), pub(3)]), T0)
    frames = session.data_to_send()
    reply = json.loads(frames[0])
    assert reply["subscribe"]["recovered"] is True and reply["subscribe"]["was_recovering"] is True
    assert reply["subscribe"]["offset"] == 1
    assert [p["offset"] for p in reply["subscribe"]["publications"]] == [2, 3]
    assert frames[1:] == [frame4]  # 3 came with the reply, 4 follows it


def test_recovery_from_another_epoch_is_not_recovered() -> None:
    session = connected()
    reply = subscribe(session, "chat:room", StreamState(5, "new"), recover=True, offset=3, epoch="old")
    result = reply["subscribe"]
    assert result.get("recovered") is None and result["was_recovering"] is True
    assert (result["epoch"], result["offset"]) == ("new", 5)


def test_unrecoverable_position_with_flag_is_error_112() -> None:
    session = connected()
    send(
        session,
        {
            "id": 2,
            "subscribe": {"channel": "chat:room", "recover": True, "offset": 3, "epoch": "old", "flag": 3},
        },
    )
    (op,) = session.effects()
    assert not session.complete(op, StreamState(5, "new"), T0)
    assert replies(session) == [{"id": 2, "error": {"code": 112, "message": "unrecoverable position"}}]
    assert "chat:room" not in session.channels


def test_gap_while_subscribing_closes_3010() -> None:
    session = connected()
    send(session, {"id": 2, "subscribe": {"channel": "chat:room"}})
    (op,) = session.effects()
    session.deliver_publication("chat:room", b"{}", 7, "ep")
    assert not session.complete(op, StreamState(3, "ep"), T0)
    assert session.close_reason == Disconnects.INSUFFICIENT_STATE


def test_typing_has_no_positions_and_buffers_until_subscribed() -> None:
    session = connected()
    send(session, {"id": 2, "subscribe": {"channel": "typing:room"}})
    (op,) = session.effects()
    assert isinstance(op, SubscribeOp) and not op.positioned
    session.deliver_publication("typing:room", b'{"push":1}', 0, "")
    assert session.complete(op, StreamState(0, ""), T0)
    assert session.data_to_send() == [b'{"id":2,"subscribe":{}}', b'{"push":1}']


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"channel": "nope:x"}, 102),
        ({"channel": "x" * 300}, 107),
        ({"channel": "news"}, 103),
        ({"channel": "chat:$private"}, 103),
        ({"channel": "personal:#bob"}, 103),
        ({"channel": "chat:ok#alice"}, 103),
        ({"channel": "chat:a", "token": "junk"}, 103),
        (
            {
                "channel": "chat:a",
                "token": jwt.encode({"sub": "alice", "channel": "chat:a", "exp": T0 - 1}, SECRET, "HS256"),
            },
            109,
        ),
    ],
    ids=[
        "unknown-ns",
        "too-long",
        "default-ns",
        "private",
        "other-user",
        "user-limited-off",
        "bad-token",
        "expired-token",
    ],
)
def test_subscribe_errors(params: dict[str, Any], code: int) -> None:
    session = connected()
    send(session, {"id": 2, "subscribe": params})
    assert replies(session)[0]["error"]["code"] == code
    assert not session.closed


def test_subscribe_with_token_to_a_private_channel_and_sub_refresh() -> None:
    session = connected(make(SessionConfig(expired_close_delay=1, ping_interval=0, personal_channel=False)))
    sub_token = jwt.encode(
        {"sub": "alice", "channel": "chat:$vip", "exp": T0 + 10, "info": {"r": 1}}, SECRET, "HS256"
    )
    send(session, {"id": 2, "subscribe": {"channel": "chat:$vip", "token": sub_token}})
    (op,) = session.effects()
    assert isinstance(op, SubscribeOp) and op.info.chan_info == b'{"r":1}'
    assert session.complete(op, StreamState(0, "e"), T0)
    assert replies(session)[0]["subscribe"]["ttl"] == 10
    new = jwt.encode({"sub": "alice", "channel": "chat:$vip", "exp": T0 + 100}, SECRET, "HS256")
    send(session, {"id": 3, "sub_refresh": {"channel": "chat:$vip", "token": new}})
    assert replies(session) == [{"id": 3, "sub_refresh": {"expires": True, "ttl": 100}}]
    session.tick(T0 + 50)
    assert not session.closed
    session.tick(T0 + 101)
    assert session.close_reason == Disconnects.SUB_EXPIRED


def test_subscription_token_for_someone_else_closes_3500() -> None:
    session = connected()
    other = jwt.encode({"sub": "bob", "channel": "chat:$vip"}, SECRET, "HS256")
    send(session, {"id": 2, "subscribe": {"channel": "chat:$vip", "token": other}})
    assert session.close_reason == Disconnects.INVALID_TOKEN


def test_sub_refresh_errors() -> None:
    session = connected()
    send(session, {"id": 2, "sub_refresh": {"channel": "chat:x", "token": "t"}})
    assert replies(session)[0]["error"]["code"] == 103
    subscribe(session, "typing:a", StreamState(0, ""), cmd_id=3)
    send(session, {"id": 4, "sub_refresh": {"channel": "typing:a"}})
    assert replies(session)[0]["error"]["code"] == 107
    send(
        session,
        {
            "id": 5,
            "sub_refresh": {
                "channel": "typing:a",
                "token": jwt.encode({"sub": "alice", "channel": "typing:a", "exp": T0 - 1}, SECRET, "HS256"),
            },
        },
    )
    assert replies(session)[0]["error"]["code"] == 110
    send(session, {"id": 6, "sub_refresh": {"channel": "typing:a", "token": "junk"}})
    assert session.close_reason == Disconnects.INVALID_TOKEN


def test_already_subscribed_and_channel_limit() -> None:
    session = connected(make(SessionConfig(max_channels=1, personal_channel=False)))
    subscribe(session, "typing:a", StreamState(0, ""))
    send(session, {"id": 3, "subscribe": {"channel": "typing:a"}})
    assert replies(session)[0]["error"]["code"] == 105
    send(session, {"id": 4, "subscribe": {"channel": "typing:b"}})
    assert replies(session)[0]["error"]["code"] == 106


def test_unsubscribe_replies_and_cleans_up() -> None:
    session = connected()
    subscribe(session, "chat:a", StreamState(0, "e"))
    send(session, {"id": 3, "unsubscribe": {"channel": "chat:a"}})
    assert replies(session) == [{"id": 3, "unsubscribe": {}}]
    (op,) = session.effects()
    assert isinstance(op, UnsubscribeOp)
    session.deliver_publication("chat:a", b"{}", 1, "e")
    assert session.data_to_send() == []


def test_join_leave_only_for_subscribers_that_asked() -> None:
    session = connected()
    subscribe(session, "chat:a", StreamState(0, "e"), join_leave=True)
    subscribe(session, "open:b", StreamState(0, "e"), cmd_id=3)
    session.deliver_join_leave("chat:a", b"J")
    session.deliver_join_leave("open:b", b"K")
    assert session.data_to_send() == [b"J"]


# -- other commands -------------------------------------------------------------------


def test_publish_requires_subscription_in_chat() -> None:
    session = connected()
    send(session, {"id": 2, "publish": {"channel": "chat:a", "data": {"x": 1}}})
    assert replies(session)[0]["error"]["code"] == 103
    subscribe(session, "chat:a", StreamState(0, "e"), cmd_id=3)
    send(session, {"id": 4, "publish": {"channel": "chat:a", "data": {"x": 1}}})
    (op,) = session.effects()
    assert isinstance(op, PublishOp) and op.data == b'{"x":1}' and op.info.user == "alice"
    session.complete(op, PublishResult(), T0)
    assert replies(session) == [{"id": 4, "publish": {}}]
    send(session, {"id": 5, "publish": {"channel": "chat:a"}})
    assert replies(session)[0]["error"]["code"] == 107


def test_presence_history_rpc_send_ping() -> None:
    session = connected()
    send(
        session,
        {"id": 2, "presence": {"channel": "open:a"}},
        {"id": 3, "presence_stats": {"channel": "open:a"}},
        {"id": 4, "history": {"channel": "open:a", "limit": 5000, "since": {"offset": 2, "epoch": "e"}}},
        {"id": 5, "rpc": {"method": "echo", "data": [1]}},
        {"send": {"data": {"hello": 1}}},
        {"id": 6, "ping": {}},
    )
    ops = session.effects()
    assert [type(op) for op in ops] == [PresenceOp, PresenceStatsOp, HistoryOp, RpcOp, SendOp]
    history = ops[2]
    assert isinstance(history, HistoryOp) and history.limit == 1000 and history.since == (2, "e")
    rpc = ops[3]
    assert isinstance(rpc, RpcOp) and rpc.rpc_method == "echo" and rpc.data == b"[1]"
    session.complete(rpc, Failed(ErrorCode.METHOD_NOT_FOUND), T0)
    assert replies(session) == [
        {"id": 6, "ping": {}},
        {"id": 5, "error": {"code": 104, "message": "method not found"}},
    ]


@pytest.mark.parametrize(
    ("command", "code"),
    [
        ({"presence": {"channel": "typing:a"}}, 108),
        ({"presence": {"channel": "chat:a"}}, 103),
        ({"history": {"channel": "typing:a"}}, 108),
        ({"history": {"channel": "chat:a"}}, 103),
        ({"history": {"channel": "open:a", "limit": "x"}}, 107),
        ({"history": {"channel": "open:a", "since": 3}}, 107),
        ({"history": {"channel": "open:a", "since": {"offset": "x"}}}, 107),
        ({"rpc": {"method": 3}}, 107),
    ],
)
def test_command_errors(command: dict[str, Any], code: int) -> None:
    session = connected()
    send(session, {"id": 9, **command})
    assert replies(session)[0]["error"]["code"] == code


def test_internal_errors_are_temporary() -> None:
    session = connected()
    send(session, {"id": 2, "presence": {"channel": "open:a"}})
    (op,) = session.effects()
    session.complete(op, Failed(ErrorCode.INTERNAL), T0)
    assert replies(session) == [{"id": 2, "error": {"code": 100, "message": "internal", "temporary": True}}]


def test_command_rate_limit_errors_then_closes() -> None:
    config = SessionConfig(command_rate=1, command_burst=2, max_rate_violations=2, personal_channel=False)
    session = connected(make(config))
    for i in range(2):
        send(session, {"id": 10 + i, "ping": {}})
    assert len(replies(session)) == 2
    send(session, {"id": 20, "ping": {}})
    assert replies(session)[0]["error"] == {"code": 111, "message": "too many requests", "temporary": True}
    send(session, {"id": 21, "ping": {}})
    send(session, {"id": 22, "ping": {}})
    assert session.close_reason == Disconnects.TOO_MANY_REQUESTS
    # Time refills the bucket.
    session = connected(make(config))
    for i in range(3):
        send(session, {"id": 10 + i, "ping": {}}, now=T0 + 2 * i)
    assert all("ping" in r for r in replies(session))


def test_slow_consumer_queue_limit() -> None:
    session = connected(make(SessionConfig(queue_max_bytes=100, personal_channel=False)))
    subscribe(session, "typing:a", StreamState(0, ""))
    session.deliver_publication("typing:a", b"x" * 60, 0, "")
    session.deliver_publication("typing:a", b"x" * 60, 0, "")
    assert session.close_reason == Disconnects.SLOW


def test_presence_is_refreshed_periodically() -> None:
    config = SessionConfig(presence_update_interval=10, ping_interval=0, personal_channel=False)
    session = connected(make(config))
    subscribe(session, "chat:a", StreamState(0, "e"))
    session.tick(T0 + 10)
    (op,) = session.effects()
    assert isinstance(op, PresenceRefreshOp) and [c for c, _ in op.entries] == ["chat:a"]


def test_server_unsubscribe_and_cleanup() -> None:
    session = connected()
    subscribe(session, "chat:a", StreamState(0, "e"))
    session.server_unsubscribe("chat:a")
    session.server_unsubscribe("chat:a")
    assert replies(session) == [
        {"push": {"channel": "chat:a", "unsubscribe": {"code": 2000, "reason": "server unsubscribe"}}}
    ]
    assert [type(op) for op in session.effects()] == [UnsubscribeOp]
    subscribe(session, "chat:b", StreamState(0, "e"), cmd_id=5)
    session.close(Disconnects.SHUTDOWN)
    assert [op.channel for op in session.cleanup_ops()] == ["chat:b"]
    assert session.close_reason == Disconnects.SHUTDOWN


def test_commands_batched_after_connect_and_subscribe_wait_for_them() -> None:
    """centrifuge-js sends connect and its subscribes in one frame."""
    session = make()
    send(
        session,
        {"id": 1, "connect": {"token": token()}},
        {"id": 2, "subscribe": {"channel": "chat:a"}},
        {"id": 3, "publish": {"channel": "chat:a", "data": 1}},
    )
    (connect,) = session.effects()
    assert isinstance(connect, ConnectOp)
    session.complete(connect, Connected({}), T0)
    (sub,) = session.effects()
    assert isinstance(sub, SubscribeOp)
    assert session.complete(sub, StreamState(0, "e"), T0)
    (publish,) = session.effects()
    assert isinstance(publish, PublishOp)  # allowed: the subscription exists by now
    assert [next(iter(r.keys() - {"id"})) for r in replies(session)] == ["connect", "subscribe"]


def test_a_rejected_subscribe_releases_the_commands_behind_it() -> None:
    session = connected()
    send(session, {"id": 2, "subscribe": {"channel": "chat:a"}}, {"id": 3, "ping": {}})
    (sub,) = session.effects()
    assert replies(session) == []
    session.complete(sub, Failed(ErrorCode.INTERNAL), T0)
    assert [r["id"] for r in replies(session)] == [2, 3]


# -- the rule book on the client path ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("recovery", "accepted"),
    [
        ({"offset": 5, "epoch": "e"}, True),
        ({}, True),
        ({"offset": 2**64 - 1}, True),
        ({"offset": "5", "epoch": "e"}, False),  # digit strings: not what the SDKs send, nor Centrifugo takes
        ({"offset": True, "epoch": "e"}, False),  # a bool is not an offset
        ({"offset": -1}, False),
        ({"offset": 1.5}, False),
        ({"offset": 1, "epoch": 7}, False),
    ],
)
def test_a_recovery_position_follows_the_offset_rule(recovery: dict[str, Any], accepted: bool) -> None:
    session = connected()
    send(session, {"id": 2, "subscribe": {"channel": "chat:a", "recover": True, **recovery}})
    if accepted:
        (op,) = session.effects()
        assert isinstance(op, SubscribeOp) and op.since == (
            recovery.get("offset", 0),
            recovery.get("epoch", ""),
        )
    else:
        assert session.close_reason == Disconnects.BAD_REQUEST
        assert session.effects() == [] and "chat:a" not in session.channels


def test_a_malformed_recovery_closes_even_where_the_namespace_would_not_recover() -> None:
    """The command's shape is checked before its meaning, as Centrifugo decodes a command whole."""
    session = connected()
    send(session, {"id": 2, "subscribe": {"channel": "typing:a", "recover": True, "offset": "5"}})
    assert session.close_reason == Disconnects.BAD_REQUEST


@pytest.mark.parametrize("entry", [5, "x", [1], {"recover": True, "offset": "1"}])
def test_a_malformed_connect_subs_entry_closes_with_bad_request(entry: Any) -> None:
    session = make()
    send(session, {"id": 1, "connect": {"token": token(channels=["chat:a"]), "subs": {"chat:a": entry}}})
    assert session.close_reason == Disconnects.BAD_REQUEST


def test_a_malformed_command_is_answered_in_its_turn() -> None:
    """Commands behind a subscribe wait for it, a malformed one included."""
    session = connected()
    send(
        session,
        {"id": 2, "subscribe": {"channel": "chat:a"}},
        {"id": 3, "history": {"channel": "chat:a", "limit": "5"}},
    )
    (op,) = session.effects()
    assert replies(session) == []
    assert session.complete(op, StreamState(0, "e"), T0)
    assert [(r["id"], r.get("error", {}).get("code")) for r in replies(session)] == [(2, None), (3, 107)]


def test_a_connect_completed_without_the_stream_of_a_server_side_subscription_closes() -> None:
    session = make(SessionConfig(personal_channel=False))
    send(session, {"id": 1, "connect": {"token": token(channels=["chat:lobby"])}})
    (op,) = session.effects()
    assert not session.complete(op, Connected({}), T0)
    assert session.close_reason == Disconnects.SERVER_ERROR


def test_completing_after_the_connection_closed_sends_nothing() -> None:
    session = connected()
    send(session, {"id": 2, "presence": {"channel": "open:a"}}, {"id": 3, "subscribe": {"channel": "chat:a"}})
    presence, sub = session.effects()
    session.close(Disconnects.SHUTDOWN)
    assert not session.complete(presence, PresenceStatsResult(1, 1), T0)
    assert not session.complete(sub, StreamState(0, "e"), T0)
    assert not session.complete(sub, Failed(ErrorCode.INTERNAL), T0)
    assert session.data_to_send() == []


def test_a_failed_connect_is_answered_and_leaves_the_connection_unusable() -> None:
    session = make()
    send(session, {"id": 1, "connect": {"token": token()}})
    (op,) = session.effects()
    assert not session.complete(op, Failed(ErrorCode.INTERNAL), T0)
    assert replies(session) == [{"id": 1, "error": {"code": 100, "message": "internal", "temporary": True}}]
    send(session, {"id": 2, "connect": {"token": token()}})
    assert session.close_reason == Disconnects.BAD_REQUEST


def test_a_publication_of_another_epoch_while_subscribing_closes_3010() -> None:
    session = connected()
    send(session, {"id": 2, "subscribe": {"channel": "chat:room"}})
    (op,) = session.effects()
    session.deliver_publication("chat:room", b"{}", 4, "old")
    assert not session.complete(op, StreamState(3, "new"), T0)
    assert session.close_reason == Disconnects.INSUFFICIENT_STATE


def test_a_plain_publish_into_a_document_namespace_is_refused() -> None:
    """Documents are written with doc.send, which logs them; a raw publish would skip the log."""
    rules = ChannelRules(
        {"doc": NamespaceOptions(allow_subscribe_for_client=True, allow_publish_for_client=True)}
    )
    session = Session(
        "c1",
        config=SessionConfig(personal_channel=False),
        rules=rules,
        verifier=TokenVerifier(hmac_secret=SECRET),
        now=T0,
    )
    connected(session)
    send(session, {"id": 2, "publish": {"channel": "doc:plan", "data": {"m": "AAA="}}})
    assert replies(session)[0]["error"]["code"] == 103
