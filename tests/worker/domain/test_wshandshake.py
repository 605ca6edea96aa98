"""The native listener's verdict on a connection's first bytes: read more, serve the upgrade, or hand
everything to aiohttp."""

from __future__ import annotations

import pytest
from resonance_worker.domain.wshandshake import (
    NOT_OURS,
    Upgrade,
    accept_key,
    json_refusal,
    read_head,
    switching_protocols,
)

PATH = "/connection/websocket"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 1.3's example
GOOD = (
    "GET /connection/websocket?token=abc&format=json HTTP/1.1\r\nHost: example.test\r\n"
    "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: " + KEY + "\r\n"
    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: a\r\nSec-WebSocket-Protocol: b\r\n"
    "X-Forwarded-For: 10.0.0.1\r\n\r\n"
).encode()


def test_a_valid_upgrade_is_ours_with_its_query_headers_and_length() -> None:
    verdict = read_head(GOOD + b"\x81\x80", PATH)
    assert isinstance(verdict, Upgrade)
    assert verdict.query == "token=abc&format=json"
    assert verdict.key == KEY
    assert verdict.consumed == len(GOOD)
    assert verdict.header("x-forwarded-for") == "10.0.0.1"
    assert verdict.header_all("sec-websocket-protocol") == ["a", "b"]
    assert verdict.header("origin") is None


def test_an_incomplete_head_waits_unless_it_can_no_longer_be_ours() -> None:
    for cut in (1, 10, 30, len(GOOD) - 1):
        assert read_head(GOOD[:cut], PATH) is None
    assert read_head(b"GET /health HT", PATH) is NOT_OURS
    assert read_head(b"POST /conn", PATH) is NOT_OURS
    assert read_head(b"GET /connection/websocket?" + b"x" * 9000, PATH) is NOT_OURS  # over MAX_HEAD


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"HTTP/1.1", b"HTTP/1.0"),
        (b"GET ", b"POST "),
        (b"/connection/websocket?", b"/connection/websocket/?"),
        (b"Upgrade: websocket\r\n", b""),
        (b"keep-alive, Upgrade", b"keep-alive"),
        (b"Version: 13", b"Version: 8"),
        (KEY.encode(), b"short"),
        (b"Host: example.test\r\n", b""),
        (b"Host: example.test\r\n", b"Host: a\r\nHost: b\r\n"),
        (b"X-Forwarded-For: 10.0.0.1\r\n", b"X-Forwarded-For: 10.0.0.1\r\n folded\r\n"),
        (b"X-Forwarded-For:", b"X-Forwarded-For :"),
        (b"X-Forwarded-For: 10.0.0.1\r\n", b"Content-Length: 5\r\n"),
        (b"X-Forwarded-For: 10.0.0.1\r\n", b"X-Name: \xc3\xa9\r\n"),
    ],
)
def test_anything_else_is_handed_over(old: bytes, new: bytes) -> None:
    assert read_head(GOOD.replace(old, new, 1), PATH) is NOT_OURS


def test_the_answers() -> None:
    assert accept_key(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 1.3
    assert switching_protocols(KEY, None) == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    )
    assert b"Sec-WebSocket-Protocol: centrifuge-protobuf\r\n" in switching_protocols(
        KEY, "centrifuge-protobuf"
    )
    refusal = json_refusal(403, "address not allowed")
    head, _, body = refusal.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert b"Content-Length: %d" % len(body) in head
    assert body == b'{"error": "address not allowed"}'
