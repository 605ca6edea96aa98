"""Frames of the Centrifuge client protocol v2, JSON encoding (sans-I/O).

A WebSocket text frame carries one or more JSON objects separated by ``\\n``.
Client to server: ``Command`` objects ``{"id": 1, "<method>": {...}}``; an
empty object ``{}`` is the pong to a server ping. Server to client: ``Reply``
objects ``{"id": 1, "<method>": {...}}`` or ``{"id": 1, "error": {...}}``,
pushes ``{"push": {"channel": "...", "pub": {...}}}``, and the empty object
``{}`` as the server ping. Field names follow ``centrifugal/protocol``
``client.proto`` (JSON names are the proto field names); ``bytes`` fields such
as ``data`` hold raw JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from resonance_worker.domain.codes import ErrorCode

METHODS = (
    "connect",
    "subscribe",
    "unsubscribe",
    "publish",
    "presence",
    "presence_stats",
    "history",
    "ping",
    "send",
    "rpc",
    "refresh",
    "sub_refresh",
)

PING_FRAME = b"{}"
"""The server ping: an empty reply. The SDK answers with an empty command."""

_MAX_COMMAND_ID = 2**32 - 1


class ProtocolViolationError(ValueError):
    """A frame that is not the protocol: the connection is closed with "bad request"."""


@dataclass(frozen=True, slots=True)
class Command:
    """One decoded command. ``method`` is ``""`` for a pong."""

    id: int
    method: str
    params: Mapping[str, Any]

    @property
    def is_pong(self) -> bool:
        return self.method == ""


def parse_frame(text: str) -> list[Command]:
    """Decode every command of a text frame; raise ``ProtocolViolationError`` on any bad one."""
    commands = []
    for line in text.split("\n"):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ProtocolViolationError(f"not JSON: {exc}") from None
        commands.append(_command_from_object(obj))
    if not commands:
        raise ProtocolViolationError("empty frame")
    return commands


def _command_from_object(obj: object) -> Command:
    if not isinstance(obj, dict):
        raise ProtocolViolationError("a command must be a JSON object")
    cmd_id = obj.get("id", 0)
    if not isinstance(cmd_id, int) or isinstance(cmd_id, bool) or not 0 <= cmd_id <= _MAX_COMMAND_ID:
        raise ProtocolViolationError("id must be an unsigned 32-bit integer")
    present = [m for m in METHODS if obj.get(m) is not None]
    if not present:
        if cmd_id == 0:
            return Command(0, "", {})
        raise ProtocolViolationError("command without a method")
    method = present[0]  # as Centrifuge: the first request present wins
    params = obj[method]
    if not isinstance(params, dict):
        raise ProtocolViolationError(f"{method} must be an object")
    if cmd_id == 0 and method != "send":
        raise ProtocolViolationError("only send may have no id")
    return Command(cmd_id, method, params)


def raw_json(value: Any) -> bytes | None:
    """A ``data`` field as the raw JSON bytes to store (``None`` when absent)."""
    if value is None:
        return None
    return orjson.dumps(value)


class ClientInfoLike(Protocol):
    """Who published, joined or left (the engine's ``ClientInfo`` fits)."""

    @property
    def user(self) -> str: ...
    @property
    def client(self) -> str: ...
    @property
    def conn_info(self) -> bytes | None: ...
    @property
    def chan_info(self) -> bytes | None: ...


class PublicationLike(Protocol):
    """A publication (the engine's ``Publication`` fits)."""

    @property
    def data(self) -> bytes: ...
    @property
    def offset(self) -> int: ...
    @property
    def info(self) -> ClientInfoLike | None: ...
    @property
    def tags(self) -> dict[str, str]: ...


def client_info_json(info: ClientInfoLike) -> dict[str, Any]:
    out: dict[str, Any] = {"user": info.user, "client": info.client}
    if info.conn_info:
        out["conn_info"] = orjson.Fragment(info.conn_info)
    if info.chan_info:
        out["chan_info"] = orjson.Fragment(info.chan_info)
    return out


def publication_json(pub: PublicationLike) -> dict[str, Any]:
    out: dict[str, Any] = {"data": orjson.Fragment(pub.data or b"null")}
    if pub.info is not None:
        out["info"] = client_info_json(pub.info)
    if pub.offset:
        out["offset"] = pub.offset
    if pub.tags:
        out["tags"] = dict(pub.tags)
    return out


def encode(obj: Mapping[str, Any]) -> bytes:
    """One message as UTF-8 JSON bytes, sent as a text frame (encoded once, even for fan-out)."""
    return orjson.dumps(obj)


def encode_reply(cmd_id: int, method: str, result: Mapping[str, Any]) -> bytes:
    """A successful reply: ``{"id": N, "<method>": {...}}``."""
    return encode({"id": cmd_id, method: result})


def encode_error(cmd_id: int, code: ErrorCode, message: str | None = None) -> bytes:
    error: dict[str, Any] = {"code": int(code), "message": message or code.message}
    if code.temporary:
        error["temporary"] = True
    return encode({"id": cmd_id, "error": error})


def encode_push(channel: str, kind: str, body: Mapping[str, Any]) -> bytes:
    """An asynchronous push: ``{"push": {"channel": "...", "<kind>": {...}}}``."""
    push: dict[str, Any] = {kind: body}
    if channel:
        push["channel"] = channel
    return encode({"push": push})


def encode_publication_push(channel: str, pub: PublicationLike) -> bytes:
    return encode_push(channel, "pub", publication_json(pub))


def encode_join_push(channel: str, info: ClientInfoLike) -> bytes:
    return encode_push(channel, "join", {"info": client_info_json(info)})


def encode_leave_push(channel: str, info: ClientInfoLike) -> bytes:
    return encode_push(channel, "leave", {"info": client_info_json(info)})


def encode_message_push(data: bytes) -> bytes:
    return encode_push("", "message", {"data": orjson.Fragment(data)})


def encode_unsubscribe_push(channel: str, code: int, reason: str) -> bytes:
    return encode_push(channel, "unsubscribe", {"code": code, "reason": reason})


def encode_disconnect_push(code: int, reason: str) -> bytes:
    return encode_push("", "disconnect", {"code": code, "reason": reason})
