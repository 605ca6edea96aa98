"""RFC 6455 frames as a server reads and writes them. Sans I/O: bytes in, events out.

:class:`FrameReader` is fed the bytes a client sent, in whatever pieces they arrived, and answers
the events they complete, in order:

* :class:`Message` - a whole data message (continuation frames joined): ``str`` for a text
  message (UTF-8 checked), ``bytes`` for a binary one;
* :class:`Ping` / :class:`Pong` - control frames (a ping is answered by its caller with
  :func:`pong_frame`);
* :class:`Close` - the client's close frame, its ``code`` (1005 when it named none) and reason.

What the client may not send raises :class:`FrameError` with the close code the server answers
with, as aiohttp's reader does: 1002 (an unmasked frame, reserved bits, an unknown opcode, a
fragmented or oversized control frame, a continuation out of place, a bad close code), 1007 (a
text message or close reason that is not UTF-8), 1009 (a message over ``max_size``: refused on its
frame header, before its payload is buffered). After an error the reader is spent.

The writers (:func:`frame`, :func:`close_frame`, :func:`pong_frame`) build unmasked frames, as a
server sends them. The opening handshake is ``domain/wshandshake.py``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

TEXT = 0x1
BINARY = 0x2
CONTINUATION = 0x0
CLOSE = 0x8
PING = 0x9
PONG = 0xA

PROTOCOL_ERROR = 1002
INVALID_PAYLOAD = 1007
MESSAGE_TOO_BIG = 1009
NO_STATUS = 1005

MAX_CONTROL_PAYLOAD = 125


class FrameError(ValueError):
    """Bytes a client may not send: close the connection with ``code``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Message:
    data: str | bytes
    """``str``: a text message; ``bytes``: a binary one."""


@dataclass(frozen=True, slots=True)
class Ping:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Close:
    code: int
    reason: str


Event = Message | Ping | Pong | Close


def _valid_close_code(code: int) -> bool:
    """RFC 6455 7.4: the codes an endpoint may send (1004-1006, 1015 and unassigned 1xxx are not)."""
    return code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014) or (
        3000 <= code <= 4999
    )


def unmask(payload: bytes, mask: bytes) -> bytes:
    """``payload`` XOR the repeated 4-byte ``mask`` (one big-integer XOR: C speed, no loop)."""
    size = len(payload)
    if not size:
        return b""
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(size, "little")


_SHORT = struct.Struct("!BB")
_MEDIUM = struct.Struct("!H")
_LONG = struct.Struct("!Q")


class FrameReader:
    """One client's inbound frames (see the module docstring). ``max_size``: the largest message, in
    bytes (0: unlimited)."""

    __slots__ = ("_buffer", "_fragments", "_fragments_size", "_max_size", "_opcode")

    def __init__(self, max_size: int) -> None:
        self._max_size = max_size
        self._buffer = b""
        self._fragments: list[bytes] | None = None  # a fragmented data message in progress
        self._fragments_size = 0
        self._opcode = 0  # that message's opcode

    @property
    def pending(self) -> int:
        """Bytes held: an incomplete frame, or the fragments of an incomplete message."""
        return len(self._buffer) + self._fragments_size

    def feed(self, data: bytes) -> list[Event]:
        """The events ``data`` (the next bytes from the client) completes; ``FrameError`` on a violation."""
        buffer = self._buffer + data if self._buffer else data
        events: list[Event] = []
        offset = 0
        end = len(buffer)
        while end - offset >= 2:
            first, second = _SHORT.unpack_from(buffer, offset)
            if first & 0x70:
                raise FrameError(PROTOCOL_ERROR, "reserved bits set (no extension was negotiated)")
            if not second & 0x80:
                raise FrameError(PROTOCOL_ERROR, "a client frame must be masked")
            fin = first & 0x80
            opcode = first & 0x0F
            length = second & 0x7F
            header = 2
            if length == 126:
                if end - offset < 4:
                    break
                (length,) = _MEDIUM.unpack_from(buffer, offset + 2)
                header = 4
            elif length == 127:
                if end - offset < 10:
                    break
                (length,) = _LONG.unpack_from(buffer, offset + 2)
                if length >> 63:
                    raise FrameError(PROTOCOL_ERROR, "frame length with its most significant bit set")
                header = 10
            self._check_header(fin, opcode, length)
            start = offset + header + 4
            if end - start < length:
                break
            payload = unmask(buffer[start : start + length], buffer[offset + header : start])
            offset = start + length
            event = self._frame(fin, opcode, payload)
            if event is not None:
                events.append(event)
        self._buffer = buffer[offset:] if offset < end else b""
        return events

    def _check_header(self, fin: int, opcode: int, length: int) -> None:
        if opcode >= CLOSE:
            if opcode not in (CLOSE, PING, PONG):
                raise FrameError(PROTOCOL_ERROR, f"unknown opcode {opcode:#x}")
            if not fin:
                raise FrameError(PROTOCOL_ERROR, "a control frame must not be fragmented")
            if length > MAX_CONTROL_PAYLOAD:
                raise FrameError(PROTOCOL_ERROR, f"control frame payload of {length} bytes (at most 125)")
            return
        if opcode == CONTINUATION:
            if self._fragments is None:
                raise FrameError(PROTOCOL_ERROR, "continuation frame without a message to continue")
        elif opcode in (TEXT, BINARY):
            if self._fragments is not None:
                raise FrameError(PROTOCOL_ERROR, "a new message began before the fragmented one ended")
        else:
            raise FrameError(PROTOCOL_ERROR, f"unknown opcode {opcode:#x}")
        size = self._fragments_size + length
        if self._max_size and size > self._max_size:
            raise FrameError(
                MESSAGE_TOO_BIG, f"message of at least {size} bytes exceeds limit {self._max_size}"
            )

    def _frame(self, fin: int, opcode: int, payload: bytes) -> Event | None:
        if opcode == PING:
            return Ping(payload)
        if opcode == PONG:
            return Pong(payload)
        if opcode == CLOSE:
            return _close(payload)
        if not fin:
            if self._fragments is None:
                self._fragments = []
                self._opcode = opcode
            self._fragments.append(payload)
            self._fragments_size += len(payload)
            return None
        if self._fragments is not None:  # the last continuation
            self._fragments.append(payload)
            payload = b"".join(self._fragments)
            opcode = self._opcode
            self._fragments = None
            self._fragments_size = 0
        if opcode == TEXT:
            try:
                return Message(payload.decode("utf-8"))
            except UnicodeDecodeError:
                raise FrameError(INVALID_PAYLOAD, "text message is not valid UTF-8") from None
        return Message(payload)


def _close(payload: bytes) -> Close:
    if not payload:
        return Close(NO_STATUS, "")
    if len(payload) == 1:
        raise FrameError(PROTOCOL_ERROR, "close frame with a 1-byte payload")
    (code,) = _MEDIUM.unpack_from(payload)
    if not _valid_close_code(code):
        raise FrameError(PROTOCOL_ERROR, f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError(INVALID_PAYLOAD, "close reason is not valid UTF-8") from None
    return Close(code, reason)


_HEADER_SHORT = struct.Struct("!BB").pack
_HEADER_MEDIUM = struct.Struct("!BBH").pack
_HEADER_LONG = struct.Struct("!BBQ").pack


def frame(first: int, payload: bytes) -> bytes:
    """One unmasked frame: ``first`` is its first byte (FIN and the opcode)."""
    size = len(payload)
    if size < 126:
        return _HEADER_SHORT(first, size) + payload
    if size < 65536:
        return _HEADER_MEDIUM(first, 126, size) + payload
    return _HEADER_LONG(first, 127, size) + payload


def close_frame(code: int, reason: str = "") -> bytes:
    """A close frame naming ``code`` (the reason cut to fit a control frame's 125 bytes)."""
    cut = reason.encode()[: MAX_CONTROL_PAYLOAD - 2].decode("utf-8", "ignore")  # whole characters only
    return frame(0x80 | CLOSE, struct.pack("!H", code) + cut.encode())


def pong_frame(payload: bytes) -> bytes:
    """The answer to a ping carrying ``payload``."""
    return frame(0x80 | PONG, payload)
