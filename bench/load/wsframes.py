"""A minimal RFC 6455 WebSocket client codec — pure, no I/O.

The load tool speaks WebSocket itself because on a 2-core machine the client's cost per message sets how much
of the measured latency is the server's: frames are parsed synchronously in ``data_received`` and stamped
with one clock read per chunk, with no coroutine wake-up per message (aiohttp's client cost ~35 µs/message
here). Only what a Centrifugo-protocol client needs: text and binary frames, a subprotocol, ping/pong, close,
continuation frames; no extensions (compression is never negotiated, as the benchmark wants).

Client frames are masked with an all-zero key: the frame format stays RFC 6455 (mask bit set, 4-byte key) and
servers accept it, while the payload is sent as is. RFC 6455 asks browsers for unpredictable keys to protect
intermediaries; this tool only talks to loopback.
"""

from __future__ import annotations

import base64
import hashlib
import struct

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_ZERO_MASK = b"\x00\x00\x00\x00"


class WebSocketError(Exception):
    """A handshake or frame that breaks RFC 6455 (or that this codec does not support)."""


def accept_key(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` a server must answer for ``Sec-WebSocket-Key: key``."""
    return base64.b64encode(hashlib.sha1(key.encode() + _ACCEPT_GUID).digest()).decode()


def handshake_request(host: str, port: int, path: str, key: str, subprotocol: str | None = None) -> bytes:
    offer = f"Sec-WebSocket-Protocol: {subprotocol}\r\n" if subprotocol else ""
    return (
        f"GET {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        f"{offer}"
        "\r\n"
    ).encode()


def parse_handshake_response(data: bytes, key: str, subprotocol: str | None = None) -> int | None:
    """``None`` while the response head is incomplete; else the length of the head (bytes after it are
    already WebSocket frames). Raises :class:`WebSocketError` for anything but a valid 101 upgrade, and when
    the server did not select the ``subprotocol`` that was offered."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        if len(data) > 16384:
            raise WebSocketError("handshake response head too large")
        return None
    lines = data[:end].decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)
    if len(status) < 2 or status[1] != "101":
        raise WebSocketError(f"handshake refused: {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("upgrade", "").lower() != "websocket":
        raise WebSocketError("handshake response lacks Upgrade: websocket")
    if headers.get("sec-websocket-accept") != accept_key(key):
        raise WebSocketError("handshake response has a wrong Sec-WebSocket-Accept")
    selected = headers.get("sec-websocket-protocol", "")
    if selected != (subprotocol or ""):
        raise WebSocketError(f"offered subprotocol {subprotocol!r}, server selected {selected!r}")
    if headers.get("sec-websocket-extensions"):
        raise WebSocketError(f"server negotiated an extension: {headers['sec-websocket-extensions']}")
    return end + 4


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """A final, masked client frame (zero mask key, see the module docstring)."""
    length = len(payload)
    first = 0x80 | opcode
    if length < 126:
        head = struct.pack("!BB", first, 0x80 | length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", first, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, length)
    return head + _ZERO_MASK + payload


def close_payload(code: int, reason: str = "") -> bytes:
    return struct.pack("!H", code) + reason.encode()


class FrameParser:
    """Incremental parser of server frames: feed bytes, get complete messages ``(opcode, payload)``.

    Fragmented messages are reassembled; control frames may arrive between fragments, as RFC 6455 allows.
    """

    def __init__(self, max_message: int = 64 * 1024 * 1024) -> None:
        self._buffer = bytearray()
        self._fragments: list[bytes] = []
        self._fragment_opcode = 0
        self.max_message = max_message

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buffer = self._buffer
        buffer += data
        messages: list[tuple[int, bytes]] = []
        position = 0
        size = len(buffer)
        while size - position >= 2:
            first, second = buffer[position], buffer[position + 1]
            if first & 0x70:
                raise WebSocketError("reserved bits set (no extension was negotiated)")
            if second & 0x80:
                raise WebSocketError("server frames must not be masked")
            length = second & 0x7F
            header = 2
            if length == 126:
                if size - position < 4:
                    break
                (length,) = struct.unpack_from("!H", buffer, position + 2)
                header = 4
            elif length == 127:
                if size - position < 10:
                    break
                (length,) = struct.unpack_from("!Q", buffer, position + 2)
                header = 10
            if length > self.max_message:
                raise WebSocketError(f"frame of {length} bytes exceeds {self.max_message}")
            end = position + header + length
            if end > size:
                break
            payload = bytes(buffer[position + header : end])
            position = end
            self._take(first & 0x80, first & 0x0F, payload, messages)
        del buffer[:position]
        return messages

    def _take(self, final: int, opcode: int, payload: bytes, messages: list[tuple[int, bytes]]) -> None:
        if opcode >= OP_CLOSE:
            if not final or len(payload) > 125:
                raise WebSocketError("control frames must be final and at most 125 bytes")
            messages.append((opcode, payload))
        elif opcode == OP_CONTINUATION:
            if not self._fragments:
                raise WebSocketError("continuation frame without a message to continue")
            self._fragments.append(payload)
            if final:
                messages.append((self._fragment_opcode, b"".join(self._fragments)))
                self._fragments = []
        elif opcode in (OP_TEXT, OP_BINARY):
            if self._fragments:
                raise WebSocketError("new message before the previous fragmented one ended")
            if final:
                messages.append((opcode, payload))
            else:
                self._fragment_opcode = opcode
                self._fragments = [payload]
        else:
            raise WebSocketError(f"unknown opcode {opcode:#x}")
