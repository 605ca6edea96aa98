"""Frames and payloads of the load tool (the wire format meets real servers in test_against_centrifugo)."""

from __future__ import annotations

import time

import jwt
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.load import protocol

ints = st.integers(min_value=0, max_value=2**62)


@given(ints, ints, ints, ints, st.text(max_size=50))
def test_payload_round_trips(sent: int, node: int, room: int, seq: int, padding: str) -> None:
    payload = protocol.Payload(sent, node, room, seq, padding)
    wire = orjson.loads(orjson.dumps(protocol.encode_payload(payload)))
    assert protocol.decode_payload(wire) == payload


def test_payload_without_padding_has_no_padding_key() -> None:
    assert protocol.encode_payload(protocol.Payload(1, 2, 3, 4)) == {"t": 1, "n": 2, "r": 3, "q": 4}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 2], "not an object"),
        ({"t": 1, "n": 0, "r": 0}, "lacks 'q'"),
        ({"t": 1.5, "n": 0, "r": 0, "q": 0}, "integers"),
        ({"t": True, "n": 0, "r": 0, "q": 0}, "integers"),
        ({"t": 1, "n": 0, "r": 0, "q": 0, "p": 5}, "padding"),
    ],
)
def test_foreign_publication_data_is_refused(data: object, message: str) -> None:
    with pytest.raises(protocol.ProtocolError, match=message):
        protocol.decode_payload(data)


@pytest.mark.parametrize("size", [60, 100, 1000])
def test_padding_brings_the_payload_near_the_requested_size(size: int) -> None:
    sent = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    data = protocol.encode_payload(protocol.Payload(sent, 1, 123, 4567, protocol.padding_for(size)))
    assert abs(len(orjson.dumps(data)) - size) <= 25


def test_token_is_hs256_with_subject_and_expiry() -> None:
    secret = "s" * 32
    token = protocol.mint_token(secret, "bench-7", now=1000.0, ttl=60)
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = jwt.decode(token, secret, algorithms=["HS256"], options={"verify_exp": False})
    assert claims == {"sub": "bench-7", "iat": 1000, "exp": 1060}


def test_commands_have_the_shapes_centrifuge_python_sends() -> None:
    # Shapes from centrifuge-python 0.7 (_construct_connect_command, _construct_subscribe_command, publish).
    assert orjson.loads(protocol.connect_command(1, "tok")) == {
        "id": 1,
        "connect": {"token": "tok", "name": "resonance-bench"},
    }
    assert orjson.loads(protocol.subscribe_command(2, "chat:a")) == {
        "id": 2,
        "subscribe": {"channel": "chat:a"},
    }
    recover = protocol.subscribe_command(3, "chat:a", recover_from=protocol.StreamPosition("ep", 7))
    assert orjson.loads(recover) == {
        "id": 3,
        "subscribe": {"channel": "chat:a", "recover": True, "epoch": "ep", "offset": 7},
    }
    assert orjson.loads(protocol.publish_command(4, "chat:a", {"x": 1})) == {
        "id": 4,
        "publish": {"channel": "chat:a", "data": {"x": 1}},
    }
    assert orjson.loads(protocol.api_publish_body("chat:a", {"x": 1})) == {
        "channel": "chat:a",
        "data": {"x": 1},
    }


def test_a_frame_may_carry_several_newline_delimited_replies() -> None:
    frame = b'{"id":1,"connect":{}}\n{}\n\n{"push":{"channel":"c","pub":{"data":{"a":1},"offset":3}}}'
    replies = list(protocol.split_frame(frame))
    assert replies == [
        {"id": 1, "connect": {}},
        {},
        {"push": {"channel": "c", "pub": {"data": {"a": 1}, "offset": 3}}},
    ]
    assert list(protocol.split_frame(frame.decode())) == replies


@pytest.mark.parametrize("frame", [b"{nope", b"[1,2]"])
def test_garbage_frames_raise(frame: bytes) -> None:
    with pytest.raises(protocol.ProtocolError):
        list(protocol.split_frame(frame))


def test_reply_result_returns_the_result_or_raises_the_error() -> None:
    assert protocol.reply_result({"id": 1, "subscribe": {"offset": 2}}, "subscribe") == {"offset": 2}
    with pytest.raises(protocol.ProtocolError, match="103 permission denied"):
        protocol.reply_result({"id": 1, "error": {"code": 103, "message": "permission denied"}}, "publish")
    with pytest.raises(protocol.ProtocolError, match="no connect result"):
        protocol.reply_result({"id": 1}, "connect")


def test_publications_and_positions_are_read_from_pushes_and_replies() -> None:
    assert protocol.publication_of({"channel": "c", "pub": {"data": 1, "offset": 9}}) == protocol.Publication(
        "c", 1, 9
    )
    assert protocol.publication_of({"channel": "c", "join": {}}) is None
    result = {"recoverable": True, "epoch": "e", "offset": 4, "publications": [{"data": 2, "offset": 4}]}
    assert protocol.recovered_publications("c", result) == [protocol.Publication("c", 2, 4)]
    assert protocol.position_of(result) == protocol.StreamPosition("e", 4)
    assert protocol.position_of({"offset": 4}) is None
