"""The protobuf codec of the Centrifuge client protocol v2 (sans-I/O): binary frames into the same typed
commands as the JSON codec (``protocol``), the same typed results into binary messages.

A binary WebSocket frame carries one or more Commands (client to server) or Replies (server to client),
each preceded by its length as a uvarint, as ``centrifugal/protocol`` frames them and the official SDKs
(centrifuge-java, -swift, -dart, centrifuge-js's protobuf build) read and write them. An empty Reply (the
single byte ``0x00``) is the server ping; an empty Command is the pong. Messages are those of
``proto/resonance/client.proto`` (field numbers of the public schema), generated into ``client_pb2`` by
``scripts/gen-proto``; protobuf's runtime (upb) encodes and decodes them.

``data`` fields are bytes here and pass through as they are: a protobuf client may publish any bytes, and
a JSON reader of bytes that are not JSON is closed with 3506 (``protocol``). ``rpc`` and ``send`` data go
to the worker's own handlers, which take JSON: other bytes are answered with 107.

Decoding rules (each broken frame closes the connection with 3501 and a reason naming what was wrong): a
text frame, a truncated length prefix, a length past the end of the frame, a Command protobuf cannot parse
(corrupt wire format, bad UTF-8 in a string), a known field with the wrong wire type (protobuf keeps it as
an unknown field under a known number), a Command with no request and an id (or a request and id 0 other
than send), more than ``MAX_COMMANDS`` Commands in one frame. Unknown field numbers are skipped, as
protobuf and Centrifuge skip them (newer SDKs send fields this worker does not know).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from google.protobuf import unknown_fields
from google.protobuf.message import DecodeError, Message

from resonance_worker.domain import client_pb2 as pb
from resonance_worker.domain.codes import ErrorCode
from resonance_worker.domain.protocol import MAX_COMMANDS, ProtocolViolationError, is_json
from resonance_worker.domain.requests import client as requests
from resonance_worker.domain.requests import rules
from resonance_worker.domain.requests.client import Command, Malformed, SubscribeOptions
from resonance_worker.domain.requests.rules import RequestError
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

PING_FRAME = b"\x00"
"""The server ping: an empty Reply, length-prefixed. The SDK answers with an empty Command."""


def uvarint(value: int) -> bytes:
    """The length prefix of the framing (message encoding is the generated module's)."""
    if value < 0x80:
        return _SMALL[value]
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL = [bytes((n,)) for n in range(0x80)]


def delimited(message: Message) -> bytes:
    body: bytes = message.SerializeToString()
    return uvarint(len(body)) + body


# -- decoding -------------------------------------------------------------------------------------


def split_frame(data: bytes) -> list[bytes]:
    """The length-delimited messages of one binary frame; ``ProtocolViolationError`` on broken framing."""
    messages: list[bytes] = []
    position, size = 0, len(data)
    if not size:
        raise ProtocolViolationError("empty frame")
    while position < size:
        length, shift = 0, 0
        while True:
            if position >= size:
                raise ProtocolViolationError("truncated length prefix")
            byte = data[position]
            position += 1
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
            if shift >= 35:
                raise ProtocolViolationError("length prefix over 32 bits")
        end = position + length
        if end > size:
            raise ProtocolViolationError(
                f"a command of {length} bytes runs past the end of the frame ({size - position} left)"
            )
        messages.append(data[position:end])
        position = end
        if len(messages) > MAX_COMMANDS:
            raise ProtocolViolationError(f"more than {MAX_COMMANDS} commands in one frame")
    return messages


def _check_wire_types(message: Message, name: str) -> None:
    """A known field number kept as an unknown field arrived with the wrong wire type."""
    fields = unknown_fields.UnknownFieldSet(message)
    if not len(fields):
        return
    known = message.DESCRIPTOR.fields_by_number
    for field in fields:
        if field.field_number in known:
            wrong = known[field.field_number].name
            raise ProtocolViolationError(f"{name}.{wrong} has the wrong wire type ({field.wire_type})")


def _decode_command(raw: bytes) -> Command:
    if not raw:
        return requests.PONG
    try:
        message = pb.Command.FromString(raw)
    except DecodeError:
        raise ProtocolViolationError("a command protobuf cannot parse") from None
    _check_wire_types(message, "Command")
    method = ""
    for field, value in message.ListFields():  # in field number order: the first request wins
        if field.number != 1:
            method = field.name
            request = value
            break
    if not method:
        if message.id == 0:
            return requests.PONG
        raise ProtocolViolationError("command without a method")
    if message.id == 0 and method != "send":
        raise ProtocolViolationError("only send may have no id")
    _check_wire_types(request, method)
    try:
        typed = _PARSERS[method](request)
    except RequestError as error:
        typed = Malformed(error)
    return Command(message.id, method, typed)


def decode_commands(data: str | bytes) -> list[Command]:
    """Every Command of a binary frame, typed by the same rules as JSON's (a refused request is
    ``Malformed``, answered in its turn); ``ProtocolViolationError`` when the frame is not the protocol."""
    if isinstance(data, str):
        raise ProtocolViolationError("a text frame on a protobuf connection")
    return [_decode_command(raw) for raw in split_frame(data)]


def _options(request: pb.SubscribeRequest) -> SubscribeOptions:
    since = (request.offset, request.epoch) if request.recover else None
    if not (request.recoverable or request.positioned or request.join_leave or since or request.flag):
        return requests.NO_OPTIONS
    return SubscribeOptions(
        recoverable=request.recoverable,
        positioned=request.positioned,
        join_leave=request.join_leave,
        since=since,
        reject_unrecovered=bool(request.flag & requests.REJECT_UNRECOVERED_FLAG),
    )


def _connect(request: pb.ConnectRequest) -> requests.ConnectRequest:
    subs = {}
    for channel, sub in request.subs.items():
        _check_wire_types(sub, "connect.subs")
        subs[channel] = _options(sub)
    name = request.name if len(request.name) <= 64 else ""
    return requests.ConnectRequest(token=request.token, subs=subs, name=name)


def _subscribe(request: pb.SubscribeRequest) -> requests.SubscribeRequest:
    return requests.SubscribeRequest(rules.channel(request.channel), request.token, _options(request))


def _publish(request: pb.PublishRequest) -> requests.PublishRequest:
    if not request.data:
        raise rules.bad_request("data is required")  # as JSON's null, and Centrifugo's empty data
    return requests.PublishRequest(rules.channel(request.channel), request.data)


def _history(request: pb.HistoryRequest) -> requests.HistoryRequest:
    since = None
    if request.HasField("since"):
        _check_wire_types(request.since, "history.since")
        since = (request.since.offset, request.since.epoch)
    return requests.HistoryRequest(
        rules.channel(request.channel),
        limit=rules.history_limit(request.limit),
        since=since,
        reverse=request.reverse,
    )


def _refresh(request: pb.RefreshRequest) -> requests.RefreshRequest:
    return requests.RefreshRequest(rules.non_empty_string(request.token, "token", fatal=True))


def json_data(data: bytes, what: str) -> bytes | None:
    """``data`` for the worker's own handlers (RPC methods, ``send``): JSON bytes, or none."""
    if not data:
        return None
    if not is_json(data):
        raise rules.bad_request(f"{what} data must be JSON")
    return data


_PARSERS: Mapping[str, Callable[[Any], requests.ClientRequest]] = {
    "connect": _connect,
    "subscribe": _subscribe,
    "unsubscribe": lambda r: requests.UnsubscribeRequest(rules.channel(r.channel)),
    "publish": _publish,
    "presence": lambda r: requests.PresenceRequest(rules.channel(r.channel)),
    "presence_stats": lambda r: requests.PresenceStatsRequest(rules.channel(r.channel)),
    "history": _history,
    "ping": lambda r: requests.PingRequest(),
    "send": lambda r: requests.SendRequest(json_data(r.data, "send")),
    "rpc": lambda r: requests.RpcRequest(r.method, json_data(r.data, "rpc")),
    "refresh": _refresh,
    "sub_refresh": lambda r: requests.SubRefreshRequest(rules.channel(r.channel), r.token),
}


# -- encoding -------------------------------------------------------------------------------------


def client_info(info: ClientInfoLike) -> pb.ClientInfo:
    return pb.ClientInfo(
        user=info.user, client=info.client, conn_info=info.conn_info or b"", chan_info=info.chan_info or b""
    )


def publication(pub: PublicationLike) -> pb.Publication:
    out = pb.Publication(data=pub.data, offset=pub.offset, tags=pub.tags or None)
    if pub.info is not None:
        out.info.CopyFrom(client_info(pub.info))
    return out


def subscribe_result(result: SubscribeResult) -> pb.SubscribeResult:
    out = pb.SubscribeResult()
    if result.ttl is not None:
        out.expires, out.ttl = True, result.ttl
    if result.positioned:
        out.positioned = True
        out.recoverable = result.recoverable
        out.was_recovering = result.was_recovering
        out.recovered = result.recovered
        out.epoch = result.epoch
        out.offset = result.offset
        out.publications.extend(publication(p) for p in result.publications)
    return out


def connect_result(result: ConnectResult) -> pb.ConnectResult:
    out = pb.ConnectResult(client=result.client, version=result.version, node=result.node)
    if result.ping is not None:
        out.ping, out.pong = result.ping, True
    if result.ttl is not None:
        out.expires, out.ttl = True, result.ttl
    for channel, sub in result.subs.items():
        out.subs[channel].CopyFrom(subscribe_result(sub))
    if result.data is not None:
        out.data = result.data
    return out


def _expiring(message: Any, ttl: int | None) -> Any:
    if ttl is not None:
        message.expires, message.ttl = True, ttl
    return message


RESULTS: Mapping[type, tuple[str, Callable[[Any], Message]]] = {
    ConnectResult: ("connect", connect_result),
    SubscribeResult: ("subscribe", subscribe_result),
    UnsubscribeResult: ("unsubscribe", lambda r: pb.UnsubscribeResult()),
    PublishResult: ("publish", lambda r: pb.PublishResult()),
    PresenceResult: (
        "presence",
        lambda r: pb.PresenceResult(presence={c: client_info(i) for c, i in r.presence.items()}),
    ),
    PresenceStatsResult: (
        "presence_stats",
        lambda r: pb.PresenceStatsResult(num_clients=r.num_clients, num_users=r.num_users),
    ),
    HistoryResult: (
        "history",
        lambda r: pb.HistoryResult(
            epoch=r.epoch, offset=r.offset, publications=[publication(p) for p in r.publications]
        ),
    ),
    RpcResult: ("rpc", lambda r: pb.RPCResult(data=r.data or b"")),
    RefreshResult: (
        "refresh",
        lambda r: _expiring(pb.RefreshResult(client=r.client, version=r.version), r.ttl),
    ),
    SubRefreshResult: ("sub_refresh", lambda r: _expiring(pb.SubRefreshResult(), r.ttl)),
    PingResult: ("ping", lambda r: pb.PingResult()),
}
"""Each result type: the Reply field it goes in and its message."""


def encode_result(cmd_id: int, result: Result) -> bytes:
    field, build = RESULTS[type(result)]
    reply = pb.Reply(id=cmd_id)
    getattr(reply, field).CopyFrom(build(result))
    return delimited(reply)


def encode_error(cmd_id: int, code: ErrorCode, message: str | None = None) -> bytes:
    error = pb.Error(code=int(code), message=message or code.message, temporary=code.temporary)
    return delimited(pb.Reply(id=cmd_id, error=error))


def _push(push: pb.Push) -> bytes:
    return delimited(pb.Reply(push=push))


def encode_publication_push(channel: str, pub: PublicationLike) -> bytes:
    return _push(pb.Push(channel=channel, pub=publication(pub)))


def encode_join_push(channel: str, info: ClientInfoLike) -> bytes:
    return _push(pb.Push(channel=channel, join=pb.Join(info=client_info(info))))


def encode_leave_push(channel: str, info: ClientInfoLike) -> bytes:
    return _push(pb.Push(channel=channel, leave=pb.Leave(info=client_info(info))))


def encode_message_push(data: bytes) -> bytes:
    return _push(pb.Push(message=pb.Message(data=data)))


def encode_unsubscribe_push(channel: str, code: int, reason: str) -> bytes:
    return _push(pb.Push(channel=channel, unsubscribe=pb.Unsubscribe(code=code, reason=reason)))


def encode_disconnect_push(code: int, reason: str) -> bytes:
    return _push(pb.Push(disconnect=pb.Disconnect(code=code, reason=reason)))


class ProtobufCodec:
    """The protobuf encoding as a ``Codec``: binary frames of length-delimited messages, joined
    with nothing between them."""

    name = "protobuf"
    binary = True
    separator = b""
    ping = PING_FRAME
    decode = staticmethod(decode_commands)
    reply = staticmethod(encode_result)
    error = staticmethod(encode_error)
    unsubscribe_push = staticmethod(encode_unsubscribe_push)
    publication_push = staticmethod(encode_publication_push)
    join_push = staticmethod(encode_join_push)
    leave_push = staticmethod(encode_leave_push)


PROTOBUF_CODEC = ProtobufCodec()
