"""The WebSocket codec of the load tool, against RFC 6455's own examples and round trips."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.load import wsframes


def server_frame(opcode: int, payload: bytes, *, final: bool = True) -> bytes:
    """An unmasked server frame, built independently of the codec under test."""
    first = (0x80 if final else 0) | opcode
    if len(payload) < 126:
        return bytes([first, len(payload)]) + payload
    if len(payload) < 65536:
        return bytes([first, 126]) + struct.pack("!H", len(payload)) + payload
    return bytes([first, 127]) + struct.pack("!Q", len(payload)) + payload


def test_accept_key_matches_the_rfc_example() -> None:
    assert wsframes.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_handshake_request_asks_for_an_upgrade_without_extensions() -> None:
    request = wsframes.handshake_request("127.0.0.1", 8000, "/connection/websocket", "a2V5").decode()
    assert request.startswith("GET /connection/websocket HTTP/1.1\r\n")
    assert "Upgrade: websocket\r\n" in request
    assert "Sec-WebSocket-Key: a2V5\r\n" in request
    assert "Sec-WebSocket-Version: 13\r\n" in request
    assert "Extensions" not in request
    assert request.endswith("\r\n\r\n")


def response(key: str, extra: str = "") -> bytes:
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {wsframes.accept_key(key)}\r\n{extra}\r\n"
    ).encode()


def test_handshake_response_returns_the_head_length_once_complete() -> None:
    head = response("a2V5")
    assert wsframes.parse_handshake_response(head[:-3], "a2V5") is None
    assert wsframes.parse_handshake_response(head + b"\x81\x00", "a2V5") == len(head)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"HTTP/1.1 403 Forbidden\r\n\r\n", "refused"),
        (response("other"), "Sec-WebSocket-Accept"),
        (response("a2V5").replace(b"Upgrade: websocket", b"Upgrade: h2c"), "Upgrade"),
        (response("a2V5", "Sec-WebSocket-Extensions: permessage-deflate\r\n"), "extension"),
        (b"x" * 20000, "too large"),
    ],
)
def test_bad_handshake_responses_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(wsframes.WebSocketError, match=message):
        wsframes.parse_handshake_response(data, "a2V5")


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_client_frames_are_masked_with_the_right_length_encoding(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    frame = wsframes.encode_frame(wsframes.OP_TEXT, payload)
    assert frame[0] == 0x81
    assert frame[1] & 0x80, "client frames must be masked"
    length = frame[1] & 0x7F
    offset = 2
    if length == 126:
        (length,) = struct.unpack_from("!H", frame, 2)
        offset = 4
    elif length == 127:
        (length,) = struct.unpack_from("!Q", frame, 2)
        offset = 10
    assert length == size
    mask = frame[offset : offset + 4]
    body = frame[offset + 4 :]
    assert bytes(b ^ mask[i % 4] for i, b in enumerate(body)) == payload


@given(st.lists(st.binary(max_size=300), max_size=8), st.integers(min_value=1, max_value=50))
def test_parser_reassembles_messages_split_at_any_point(payloads: list[bytes], chunk: int) -> None:
    stream = b"".join(server_frame(wsframes.OP_TEXT, p) for p in payloads)
    parser = wsframes.FrameParser()
    got: list[tuple[int, bytes]] = []
    for start in range(0, len(stream), chunk):
        got.extend(parser.feed(stream[start : start + chunk]))
    assert got == [(wsframes.OP_TEXT, p) for p in payloads]


def test_fragments_are_joined_and_control_frames_may_interleave() -> None:
    stream = (
        server_frame(wsframes.OP_TEXT, b"hel", final=False)
        + server_frame(wsframes.OP_PING, b"p")
        + server_frame(wsframes.OP_CONTINUATION, b"lo")
    )
    assert wsframes.FrameParser().feed(stream) == [(wsframes.OP_PING, b"p"), (wsframes.OP_TEXT, b"hello")]


def test_large_frames_use_extended_lengths() -> None:
    big = b"y" * 70000
    medium = b"z" * 300
    parser = wsframes.FrameParser()
    frames = server_frame(wsframes.OP_BINARY, big) + server_frame(wsframes.OP_TEXT, medium)
    assert parser.feed(frames[:5]) == []
    assert parser.feed(frames[5:]) == [(wsframes.OP_BINARY, big), (wsframes.OP_TEXT, medium)]


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (bytes([0x81 | 0x40, 0]), "reserved"),
        (bytes([0x81, 0x80]) + b"\0\0\0\0", "masked"),
        (server_frame(wsframes.OP_CONTINUATION, b"x"), "continuation"),
        (server_frame(wsframes.OP_PING, b"x", final=False), "control"),
        (server_frame(wsframes.OP_PING, b"x" * 126), "control"),
        (server_frame(0x3, b""), "opcode"),
        (
            server_frame(wsframes.OP_TEXT, b"a", final=False) + server_frame(wsframes.OP_TEXT, b"b"),
            "previous",
        ),
    ],
)
def test_protocol_violations_raise(frame: bytes, message: str) -> None:
    with pytest.raises(wsframes.WebSocketError, match=message):
        wsframes.FrameParser().feed(frame)


def test_oversized_frames_are_refused_before_buffering_them() -> None:
    parser = wsframes.FrameParser(max_message=10)
    with pytest.raises(wsframes.WebSocketError, match="exceeds"):
        parser.feed(bytes([0x81, 126]) + struct.pack("!H", 1000))


def test_close_payload_carries_the_code() -> None:
    assert wsframes.close_payload(1000, "bye") == b"\x03\xe8bye"
