"""The JSON codec of the Centrifuge client protocol v2 (sans-I/O): frames into typed commands,
typed results and pushes into frames.

A WebSocket text frame carries one or more JSON objects separated by ``\\n``.
Client to server: commands ``{"id": 1, "<method>": {...}}``; an empty object
``{}`` is the pong to a server ping. Server to client: replies
``{"id": 1, "<method>": {...}}`` or ``{"id": 1, "error": {...}}``, pushes
``{"push": {"channel": "...", "pub": {...}}}``, and the empty object ``{}`` as
the server ping. Field names follow ``centrifugal/protocol`` ``client.proto``
(JSON names are the proto field names); ``bytes`` fields such as ``data`` hold
raw JSON.

Decoding is two steps: ``parse_frame`` checks the envelope of every command of
a frame (a bad one is a ``ProtocolViolationError``: the connection is closed
with 3501), then each command's fields go through the rule book
(``resonance_worker.domain.requests``) into a typed ``Command``. ``JSON_CODEC``
bundles what the session and the node's fan-out need (``Codec``); the protobuf codec
(``protobuf``) is its sibling, giving the session the same commands and taking the
same results.

``data`` is carried as raw JSON, so bytes that are not JSON (a protobuf client may
publish any bytes) cannot reach a JSON client: the codec refuses them
(``publication_push`` returns None, ``reply`` raises ``UnencodableError``) and the
connection is closed with 3506 "inappropriate protocol", as Centrifugo does.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from resonance_worker.domain.codes import ErrorCode
from resonance_worker.domain.requests.client import CLIENT_REQUESTS, Command, parse_command
from resonance_worker.domain.results import (
    ClientInfoLike,
    ConnectResult,
    HistoryResult,
    PingResult,
    PresenceResult,
    PresenceStatsResult,
    PublicationLike,
    PublishResult,
    RefreshResult,
    Result,
    RpcResult,
    SubRefreshResult,
    SubscribeResult,
    UnsubscribeResult,
)

METHODS = tuple(CLIENT_REQUESTS)
"""Every client method, in the order a command's keys are tried (the first present wins)."""

PING_FRAME = b"{}"
"""The server ping: an empty reply. The SDK answers with an empty command."""

_MAX_COMMAND_ID = 2**32 - 1

MAX_COMMANDS = 1000
"""Commands one frame may carry, in either encoding (an SDK's reconnect batch is a connect and at
most one subscribe per channel, 128 by default); more closes the connection with 3501."""


class ProtocolViolationError(ValueError):
    """A frame that is not the protocol: the connection is closed with "bad request" and this
    error's message as the reason's detail (what was wrong, never the frame's content)."""


class UnencodableError(ValueError):
    """A result this encoding cannot carry (publication data that is not JSON, for a JSON
    client): the connection is closed with 3506 "inappropriate protocol"."""


class Codec(Protocol):
    """One encoding of the client protocol: frames into typed commands, and typed results,
    errors and pushes into messages. The session uses the first part; the node uses the pushes
    it fans out (``publication_push``, ``join_push``, ``leave_push``), encoding each once per
    codec in use in a channel and sharing the bytes among that codec's connections.

    A frame written to a client is its messages joined by ``separator``, sent as a binary
    WebSocket frame if ``binary`` (protobuf), else as a text frame (JSON)."""

    name: str
    """``json`` or ``protobuf``: for metrics and logs."""
    binary: bool
    separator: bytes

    @property
    def ping(self) -> bytes:
        """The server ping message."""
        ...

    def decode(self, data: str | bytes) -> list[Command]:
        """Every command of a frame (``str``: a text frame, ``bytes``: a binary one);
        ``ProtocolViolationError`` if the frame is not the protocol."""
        ...

    def reply(self, cmd_id: int, result: Result) -> bytes:
        """A successful reply; ``UnencodableError`` if the result cannot be carried."""
        ...

    def error(self, cmd_id: int, code: ErrorCode, message: str | None = None) -> bytes: ...
    def unsubscribe_push(self, channel: str, code: int, reason: str) -> bytes: ...
    def publication_push(self, channel: str, pub: PublicationLike) -> bytes | None:
        """The publication push, or None when this encoding cannot carry its data."""
        ...

    def join_push(self, channel: str, info: ClientInfoLike) -> bytes: ...
    def leave_push(self, channel: str, info: ClientInfoLike) -> bytes: ...


# -- decoding -------------------------------------------------------------------------------------


@dataclass(slots=True)
class RawCommand:
    """One command's envelope as JSON holds it. ``method`` is ``""`` for a pong."""

    id: int
    method: str
    params: Mapping[str, Any]

    @property
    def is_pong(self) -> bool:
        return self.method == ""


def parse_frame(text: str) -> list[RawCommand]:
    """Decode the envelope of every command of a text frame; raise ``ProtocolViolationError``
    on any bad one."""
    lines = text.split("\n")
    if len(lines) > MAX_COMMANDS and sum(1 for line in lines if line.strip()) > MAX_COMMANDS:
        raise ProtocolViolationError(f"more than {MAX_COMMANDS} commands in one frame")
    commands = []
    for line in lines:
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ProtocolViolationError(f"not JSON ({exc.msg} at {exc.pos})") from None
        commands.append(_command_from_object(obj))
    if not commands:
        raise ProtocolViolationError("empty frame")
    return commands


def _command_from_object(obj: object) -> RawCommand:
    if not isinstance(obj, dict):
        raise ProtocolViolationError("a command must be a JSON object")
    cmd_id = obj.get("id", 0)
    if not isinstance(cmd_id, int) or isinstance(cmd_id, bool) or not 0 <= cmd_id <= _MAX_COMMAND_ID:
        raise ProtocolViolationError("id must be an unsigned 32-bit integer")
    present = [m for m in METHODS if obj.get(m) is not None]
    if not present:
        if cmd_id == 0:
            return RawCommand(0, "", {})
        raise ProtocolViolationError("command without a method")
    method = present[0]  # as Centrifuge: the first request present wins
    params = obj[method]
    if not isinstance(params, dict):
        raise ProtocolViolationError(f"{method} must be an object")
    if cmd_id == 0 and method != "send":
        raise ProtocolViolationError("only send may have no id")
    return RawCommand(cmd_id, method, params)


def decode_commands(text: str | bytes) -> list[Command]:
    """Every command of a text frame, typed (a request the rules refuse is ``Malformed``)."""
    if not isinstance(text, str):
        raise ProtocolViolationError(
            "a binary frame on a JSON connection (the protobuf subprotocol was not asked for)"
        )
    return [parse_command(raw.id, raw.method, raw.params) for raw in parse_frame(text)]


# -- encoding -------------------------------------------------------------------------------------


def client_info_json(info: ClientInfoLike) -> dict[str, Any]:
    out: dict[str, Any] = {"user": info.user, "client": info.client}
    if info.conn_info:
        out["conn_info"] = orjson.Fragment(info.conn_info)
    if info.chan_info:
        out["chan_info"] = orjson.Fragment(info.chan_info)
    return out


def is_json(data: bytes) -> bool:
    """Whether ``data`` is one JSON value (what a JSON client can be sent as raw ``data``)."""
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return True


def publication_json(pub: PublicationLike) -> dict[str, Any]:
    """A publication's JSON object (its ``data`` trusted to be JSON: see ``checked_publications``)."""
    out: dict[str, Any] = {"data": orjson.Fragment(pub.data or b"null")}
    if pub.info is not None:
        out["info"] = client_info_json(pub.info)
    if pub.offset:
        out["offset"] = pub.offset
    if pub.tags:
        out["tags"] = dict(pub.tags)
    return out


def api_publication_json(pub: PublicationLike) -> dict[str, Any]:
    """A publication for the server API (JSON over HTTP): data that is not JSON (published by a
    protobuf client) goes base64 in ``b64data`` instead of ``data`` (as Centrifugo names it)."""
    if not pub.data or is_json(pub.data):
        return publication_json(pub)
    out = publication_json(pub)
    del out["data"]
    out["b64data"] = base64.b64encode(pub.data).decode()
    return out


def _expiry(out: dict[str, Any], ttl: int | None) -> dict[str, Any]:
    if ttl is not None:
        out["expires"] = True
        out["ttl"] = ttl
    return out


def subscribe_json(result: SubscribeResult) -> dict[str, Any]:
    out = _expiry({}, result.ttl)
    if not result.positioned:
        return out
    out["positioned"] = True
    if result.recoverable:
        out["recoverable"] = True
    if result.was_recovering:
        out["was_recovering"] = True
    if result.recovered:
        out["recovered"] = True
    out["epoch"] = result.epoch
    out["offset"] = result.offset
    if result.publications:
        out["publications"] = checked_publications(result.publications)
    return out


def checked_publications(pubs: Sequence[PublicationLike]) -> list[dict[str, Any]]:
    """Publications of a reply (history, recovery), each checked to be JSON: ``UnencodableError``
    names the first that is not."""
    out = []
    for pub in pubs:
        if pub.data and not is_json(pub.data):
            raise UnencodableError(f"publication {pub.offset} holds data that is not JSON")
        out.append(publication_json(pub))
    return out


def connect_json(result: ConnectResult) -> dict[str, Any]:
    out: dict[str, Any] = {"client": result.client, "version": result.version}
    if result.node:
        out["node"] = result.node
    if result.ping is not None:
        out["ping"] = result.ping
        out["pong"] = True
    _expiry(out, result.ttl)
    if result.subs:
        out["subs"] = {channel: subscribe_json(sub) for channel, sub in result.subs.items()}
    if result.data is not None:
        out["data"] = orjson.Fragment(result.data)
    return out


def history_json(result: HistoryResult) -> dict[str, Any]:
    out: dict[str, Any] = {"epoch": result.epoch, "offset": result.offset}
    if result.publications:
        out["publications"] = checked_publications(result.publications)
    return out


def presence_json(result: PresenceResult) -> dict[str, Any]:
    return {"presence": {client: client_info_json(info) for client, info in result.presence.items()}}


def presence_stats_json(result: PresenceStatsResult) -> dict[str, Any]:
    return {"num_clients": result.num_clients, "num_users": result.num_users}


def rpc_json(result: RpcResult) -> dict[str, Any]:
    return {} if result.data is None else {"data": orjson.Fragment(result.data)}


def refresh_json(result: RefreshResult) -> dict[str, Any]:
    return _expiry({"client": result.client, "version": result.version}, result.ttl)


def sub_refresh_json(result: SubRefreshResult) -> dict[str, Any]:
    return _expiry({}, result.ttl)


def empty_json(result: Result) -> dict[str, Any]:
    return {}


RESULTS: Mapping[type, tuple[str, Callable[[Any], dict[str, Any]]]] = {
    ConnectResult: ("connect", connect_json),
    SubscribeResult: ("subscribe", subscribe_json),
    UnsubscribeResult: ("unsubscribe", empty_json),
    PublishResult: ("publish", empty_json),
    PresenceResult: ("presence", presence_json),
    PresenceStatsResult: ("presence_stats", presence_stats_json),
    HistoryResult: ("history", history_json),
    RpcResult: ("rpc", rpc_json),
    RefreshResult: ("refresh", refresh_json),
    SubRefreshResult: ("sub_refresh", sub_refresh_json),
    PingResult: ("ping", empty_json),
}
"""Each result type: the reply's key (its method) and its JSON object."""


def encode(obj: Mapping[str, Any]) -> bytes:
    """One message as UTF-8 JSON bytes, sent as a text frame (encoded once, even for fan-out)."""
    return orjson.dumps(obj)


def encode_result(cmd_id: int, result: Result) -> bytes:
    """A successful reply: ``{"id": N, "<method>": {...}}``."""
    method, to_json = RESULTS[type(result)]
    return orjson.dumps({"id": cmd_id, method: to_json(result)})


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


def checked_publication_push(channel: str, pub: PublicationLike) -> bytes | None:
    """The publication push, or None when its data is not JSON (the node closes 3506)."""
    if pub.data and not is_json(pub.data):
        return None
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


class JsonCodec:
    """The JSON encoding as a ``Codec`` (its functions, called with no extra layer)."""

    name = "json"
    binary = False
    separator = b"\n"
    ping = PING_FRAME
    decode = staticmethod(decode_commands)
    reply = staticmethod(encode_result)
    error = staticmethod(encode_error)
    unsubscribe_push = staticmethod(encode_unsubscribe_push)
    publication_push = staticmethod(checked_publication_push)
    join_push = staticmethod(encode_join_push)
    leave_push = staticmethod(encode_leave_push)


JSON_CODEC = JsonCodec()
