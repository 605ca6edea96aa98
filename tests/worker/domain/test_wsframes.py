"""The sans-I/O RFC 6455 frame reader the native WebSocket shell uses: whole messages out of frames
split anywhere, control frames, and the close code for each thing a client may not send."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from resonance_worker.domain.wsframes import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    Close,
    FrameError,
    FrameReader,
    Message,
    Ping,
    Pong,
    close_frame,
    frame,
    pong_frame,
    unmask,
)


def client_frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bytes | None = None) -> bytes:
    """A frame as a client sends it: masked (RFC 6455 5.3), with a random key unless one is given (a
    parametrized test of such frames names its cases: two xdist workers must collect the same test ids)."""
    key = os.urandom(4) if mask is None else mask
    first = (0x80 if fin else 0) | opcode
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", first, 0x80 | size)
    elif size < 65536:
        header = struct.pack("!BBH", first, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, size)
    return header + key + unmask(payload, key)  # XOR is its own inverse


def test_a_masked_text_frame_is_one_text_message() -> None:
    reader = FrameReader(65536)
    assert reader.feed(client_frame(TEXT, "héllo".encode())) == [Message("héllo")]
    assert reader.pending == 0


def test_payload_lengths_of_each_encoding_and_binary_messages() -> None:
    reader = FrameReader(0)
    for size in (0, 1, 125, 126, 65535, 65536, 70_000):
        payload = os.urandom(size)
        assert reader.feed(client_frame(BINARY, payload)) == [Message(payload)]


def test_fragments_join_and_control_frames_between_them_come_at_once() -> None:
    reader = FrameReader(65536)
    data = (
        client_frame(TEXT, b"hel", fin=False)
        + client_frame(PING, b"p")
        + client_frame(CONTINUATION, b"lo ", fin=False)
        + client_frame(CONTINUATION, b"world")
    )
    assert reader.feed(data) == [Ping(b"p"), Message("hello world")]


def test_close_frames_carry_their_code_and_reason_or_1005() -> None:
    reader = FrameReader(65536)
    assert reader.feed(client_frame(CLOSE, struct.pack("!H", 1000) + b"bye")) == [Close(1000, "bye")]
    assert FrameReader(10).feed(client_frame(CLOSE, b"")) == [Close(1005, "")]
    assert FrameReader(10).feed(client_frame(PONG, b"x")) == [Pong(b"x")]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (frame(0x81, b"unmasked"), 1002),
        (client_frame(TEXT, b"x")[:0] + bytes([0xC1]) + client_frame(TEXT, b"x")[1:], 1002),  # RSV1
        (client_frame(0x3, b"x"), 1002),  # a reserved data opcode
        (client_frame(0xB, b"x"), 1002),  # a reserved control opcode
        (client_frame(PING, b"x", fin=False), 1002),
        (client_frame(PING, b"x" * 126), 1002),
        (client_frame(CONTINUATION, b"x"), 1002),
        (client_frame(TEXT, b"a", fin=False) + client_frame(TEXT, b"b"), 1002),
        (client_frame(CLOSE, b"\x03"), 1002),
        (client_frame(CLOSE, struct.pack("!H", 1005)), 1002),
        (client_frame(CLOSE, struct.pack("!H", 999)), 1002),
        (client_frame(TEXT, b"\xff\xfe"), 1007),
        (client_frame(TEXT, b"\xc3", fin=False) + client_frame(CONTINUATION, b"\x28"), 1007),
        (client_frame(CLOSE, struct.pack("!H", 1000) + b"\xff"), 1007),
        (client_frame(BINARY, b"x" * 2000), 1009),
        (client_frame(TEXT, b"x" * 600, fin=False) + client_frame(CONTINUATION, b"x" * 600), 1009),
    ],
    # Named cases: the frames carry random masks, and two xdist workers must collect the same test ids.
    ids=[
        "unmasked",
        "rsv1-set",
        "reserved-data-opcode",
        "reserved-control-opcode",
        "fragmented-ping",
        "ping-over-125-bytes",
        "continuation-without-start",
        "new-message-inside-fragments",
        "close-one-byte",
        "close-code-1005",
        "close-code-999",
        "bad-utf8-text",
        "bad-utf8-across-fragments",
        "bad-utf8-close-reason",
        "message-too-big",
        "fragments-too-big",
    ],
)
def test_what_a_client_may_not_send_names_its_close_code(data: bytes, code: int) -> None:
    with pytest.raises(FrameError) as raised:
        FrameReader(1024).feed(data)
    assert raised.value.code == code


def test_an_oversized_message_is_refused_on_its_header_before_its_payload() -> None:
    header = client_frame(BINARY, b"x" * 100_000)[:14]  # the 64-bit length and the mask: no payload yet
    with pytest.raises(FrameError) as raised:
        FrameReader(65536).feed(header)
    assert raised.value.code == 1009


def test_utf8_split_across_fragments_is_whole_again() -> None:
    encoded = "żółw".encode()
    data = client_frame(TEXT, encoded[:1], fin=False) + client_frame(CONTINUATION, encoded[1:])
    assert FrameReader(100).feed(data) == [Message("żółw")]


def test_server_frames() -> None:
    assert frame(0x81, b"hi") == b"\x81\x02hi"
    assert frame(0x82, b"x" * 200)[:4] == b"\x82\x7e\x00\xc8"
    assert frame(0x82, b"x" * 70_000)[:2] == b"\x82\x7f"
    assert close_frame(3001, "shutdown") == b"\x88\x0a\x0b\xb9shutdown"
    assert len(close_frame(1000, "é" * 100)) <= 2 + 125
    assert pong_frame(b"p") == b"\x8a\x01p"


_message = st.one_of(
    st.text(max_size=300).map(lambda t: (TEXT, t.encode())),
    st.binary(max_size=300).map(lambda b: (BINARY, b)),
)


@st.composite
def _stream(draw: st.DrawFn) -> tuple[bytes, list[Message | Ping]]:
    """Messages, each in one or more fragments, with pings between frames; and what they read as."""
    out = b""
    expected: list[Message | Ping] = []
    for opcode, payload in draw(st.lists(_message, max_size=6)):
        cuts = sorted(draw(st.lists(st.integers(0, len(payload)), max_size=3)))
        pieces = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)], strict=True)]
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1
            out += client_frame(opcode if index == 0 else CONTINUATION, piece, fin=last)
            if last:
                expected.append(Message(payload.decode() if opcode == TEXT else payload))
            if draw(st.booleans()):  # a ping between any two frames
                ping = draw(st.binary(max_size=10))
                out += client_frame(PING, ping)
                expected.append(Ping(ping))
    return out, expected


@settings(max_examples=200, deadline=None)
@given(stream=_stream(), data=st.data())
def test_the_byte_stream_split_at_any_points_reads_as_the_same_events(
    stream: tuple[bytes, list[Message | Ping]], data: st.DataObject
) -> None:
    raw, expected = stream
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=8)))
    reader = FrameReader(65536)
    events = []
    for start, end in zip([0, *cuts], [*cuts, len(raw)], strict=True):
        events += reader.feed(raw[start:end])
    assert events == expected
    assert reader.pending == 0
