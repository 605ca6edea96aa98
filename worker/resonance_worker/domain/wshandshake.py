"""The opening handshake of RFC 6455 (section 4.2) as the native WebSocket listener reads it. Sans
I/O: the bytes received so far in, a verdict out.

:func:`read_head` answers one of:

* ``None`` - the request head is not complete yet: read more;
* :data:`NOT_OURS` - anything but a plain, valid ``GET <path>`` WebSocket upgrade in HTTP/1.1 (another
  path or method, HTTP/1.0, a request with a body, folded or duplicated headers, a head over
  :data:`MAX_HEAD`, a bad key or version ...): the caller hands the connection, with every byte read,
  to the general HTTP server, which answers it as it answers any request (its own 400s included);
* :class:`Upgrade` - a valid upgrade for ``path``: its query, headers, key and where the head ended.

The answers the caller writes: :func:`switching_protocols` (101) and :func:`json_refusal` (a status
with a JSON ``{"error": ...}`` body, then the connection closes).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from dataclasses import dataclass
from http import HTTPStatus
from typing import Final

MAX_HEAD = 8190
"""The longest request head served natively (aiohttp's line limit); a longer one is handed over."""
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class _NotOurs:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NOT_OURS"


NOT_OURS: Final = _NotOurs()

_SINGLE = frozenset({"host", "upgrade", "sec-websocket-key", "sec-websocket-version", "origin"})
"""Headers a native upgrade may carry once only (twice: handed over)."""
_TOKEN_BYTES = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


@dataclass(frozen=True, slots=True)
class Upgrade:
    query: str
    """The raw query string (after ``?``; empty when none)."""
    headers: tuple[tuple[str, str], ...]
    """(lower-case name, value) in order."""
    key: str
    consumed: int
    """Length of the head: what follows it is WebSocket frames."""

    def header(self, name: str) -> str | None:
        """The first value of ``name`` (lower case), as aiohttp's ``headers.get``."""
        for field, value in self.headers:
            if field == name:
                return value
        return None

    def header_all(self, name: str) -> list[str]:
        return [value for field, value in self.headers if field == name]


def read_head(data: bytes, path: str) -> Upgrade | _NotOurs | None:
    """The verdict on ``data``, a connection's first bytes, for the WebSocket endpoint at ``path``."""
    end = data.find(b"\r\n\r\n", 0, MAX_HEAD + 4)
    if end < 0:
        if len(data) >= MAX_HEAD + 4 or not _may_be_ours(data, path):
            return NOT_OURS
        return None
    try:
        lines = data[:end].decode("ascii").split("\r\n")
    except UnicodeDecodeError:
        return NOT_OURS
    method, _, rest = lines[0].partition(" ")
    target, _, version = rest.partition(" ")
    if method != "GET" or version != "HTTP/1.1":
        return NOT_OURS
    target_path, _, query = target.partition("?")
    if target_path != path:
        return NOT_OURS
    headers: list[tuple[str, str]] = []
    seen: set[str] = set()
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or not _TOKEN_BYTES.issuperset(name.encode()):
            return NOT_OURS  # an obsolete fold, a space before the colon, a bad name: aiohttp's call
        name = name.lower()
        if name in _SINGLE:
            if name in seen:
                return NOT_OURS
            seen.add(name)
        headers.append((name, value.strip(" \t")))
    upgrade = Upgrade(query, tuple(headers), "", end + 4)
    key = upgrade.header("sec-websocket-key") or ""
    if (
        upgrade.header("host") is None
        or "websocket" not in _tokens(upgrade.header("upgrade"))
        or "upgrade" not in _tokens(",".join(upgrade.header_all("connection")))
        or upgrade.header("sec-websocket-version") != "13"
        or upgrade.header("transfer-encoding") is not None
        or upgrade.header("content-length") not in (None, "0")
        or not _valid_key(key)
    ):
        return NOT_OURS
    return Upgrade(query, upgrade.headers, key, end + 4)


def _may_be_ours(data: bytes, path: str) -> bool:
    """Whether an incomplete head can still become a native upgrade (else hand it over at once)."""
    prefix = f"GET {path}".encode()
    return data[: len(prefix)] == prefix[: len(data)]


def _tokens(value: str | None) -> set[str]:
    return {token.strip().lower() for token in (value or "").split(",")}


def _valid_key(key: str) -> bool:
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        return False


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def switching_protocols(key: str, subprotocol: str | None) -> bytes:
    """The 101 answer accepting the upgrade (with the chosen subprotocol, if any)."""
    chosen = f"Sec-WebSocket-Protocol: {subprotocol}\r\n" if subprotocol else ""
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_key(key)}\r\n{chosen}\r\n"
    ).encode()


def json_refusal(status: int, error: str, retry_after: float | None = None) -> bytes:
    """A refusal: ``status`` with the body ``{"error": error}`` (as the aiohttp shell answers), and
    ``Connection: close``. ``retry_after``: shed while overloaded, the body's ``retry_after`` and the
    ``Retry-After`` header (whole seconds, rounded up), as the living core's middleware answers."""
    fields: dict[str, object] = {"error": error}
    extra = ""
    if retry_after is not None:
        fields["retry_after"] = retry_after
        extra = f"Retry-After: {math.ceil(retry_after)}\r\n"
    body = json.dumps(fields).encode()
    return (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        f"Content-Type: application/json; charset=utf-8\r\n{extra}"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
