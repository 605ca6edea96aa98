"""The load tool's protobuf codec: commands the public schema reads back, replies framed as the server frames
them (several per message), and clear errors for broken framing."""

from __future__ import annotations

import pytest
from centrifuge.protocol import client_pb2 as upstream

from bench.load import protobuf, protocol, wire, wsframes
from bench.load.scenario import Encoding


def delimited(*replies: upstream.Reply) -> bytes:
    out = b""
    for reply in replies:
        body = reply.SerializeToString()
        out += protobuf.uvarint(len(body)) + body
    return out


def undelimit(frame: bytes) -> upstream.Command:
    length, position = 0, 0
    shift = 0
    while True:
        byte = frame[position]
        position += 1
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    assert position + length == len(frame)
    return upstream.Command.FromString(frame[position:])


@pytest.mark.parametrize(
    ("value", "encoded"), [(0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (300, b"\xac\x02")]
)
def test_uvarint(value: int, encoded: bytes) -> None:
    assert protobuf.uvarint(value) == encoded


def test_commands_read_back_with_the_public_schema() -> None:
    connect = undelimit(protobuf.connect_command(1, "tok"))
    assert (connect.id, connect.connect.token, connect.connect.name) == (1, "tok", "resonance-bench")
    sub = undelimit(protobuf.subscribe_command(2, "chat:1", recover_from=protocol.StreamPosition("ep", 300)))
    assert (sub.subscribe.channel, sub.subscribe.recover, sub.subscribe.epoch, sub.subscribe.offset) == (
        "chat:1", True, "ep", 300,
    )  # fmt: skip
    pub = undelimit(protobuf.publish_command(3, "chat:1", {"t": 1, "n": 0, "r": 0, "q": 5}))
    assert pub.publish.data == b'{"t":1,"n":0,"r":0,"q":5}'
    assert protobuf.PONG_FRAME == b"\x00"


def test_several_replies_in_one_message_become_the_json_shapes() -> None:
    frame = delimited(
        upstream.Reply(id=1, connect=upstream.ConnectResult(client="c1", pong=True, ping=25)),
        upstream.Reply(),  # the ping
        upstream.Reply(
            push=upstream.Push(channel="chat:1", pub=upstream.Publication(data=b'{"q":1}', offset=7))
        ),
        upstream.Reply(id=2, error=upstream.Error(code=103, message="permission denied")),
        upstream.Reply(id=3, publish=upstream.PublishResult()),
        upstream.Reply(
            id=4,
            subscribe=upstream.SubscribeResult(
                recoverable=True,
                epoch="e",
                offset=9,
                recovered=True,
                publications=[upstream.Publication(data=b'{"q":2}', offset=8)],
            ),
        ),
    )
    replies = list(protobuf.split_frame(frame))
    assert replies[0] == {"id": 1, "connect": {"client": "c1", "pong": True}}
    assert replies[1] == {}
    assert protocol.publication_of(replies[2]["push"]) == protocol.Publication("chat:1", {"q": 1}, 7)
    with pytest.raises(protocol.ProtocolError, match="103 permission denied"):
        protocol.reply_result(replies[3], "subscribe")
    assert protocol.reply_result(replies[4], "publish") == {}
    result = protocol.reply_result(replies[5], "subscribe")
    assert protocol.position_of(result) == protocol.StreamPosition("e", 9)
    assert protocol.recovered_publications("chat:1", result) == [protocol.Publication("chat:1", {"q": 2}, 8)]


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        (b"\x80", "truncated length prefix"),
        (b"\xff\xff\xff\xff\xff\xff", "longer than 5 bytes"),
        (b"\x05\x08\x01", "runs past the message"),
        (b"\x02\x0a\x09", "not a Reply"),
    ],
)
def test_broken_framing_is_a_protocol_error(frame: bytes, error: str) -> None:
    with pytest.raises(protocol.ProtocolError, match=error):
        list(protobuf.split_frame(frame))


def test_wire_choice_and_the_subprotocol_check() -> None:
    assert wire.wire_for(Encoding.PROTOBUF).opcode == wsframes.OP_BINARY
    assert wire.wire_for(Encoding.JSON).subprotocol is None
    request = wsframes.handshake_request("h", 1, "/", "k", "centrifuge-protobuf")
    assert b"Sec-WebSocket-Protocol: centrifuge-protobuf\r\n" in request
    accept = wsframes.accept_key("k")
    head = f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {accept}\r\n"
    with pytest.raises(wsframes.WebSocketError, match="server selected ''"):
        wsframes.parse_handshake_response((head + "\r\n").encode(), "k", "centrifuge-protobuf")
    chosen = (head + "Sec-WebSocket-Protocol: centrifuge-protobuf\r\n\r\n").encode()
    assert wsframes.parse_handshake_response(chosen, "k", "centrifuge-protobuf") == len(chosen)
