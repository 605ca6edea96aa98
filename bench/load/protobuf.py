"""The Centrifugo client protocol v2, protobuf encoding, as far as the load tool speaks it — pure, no I/O.

The counterpart of :mod:`bench.load.protocol` (JSON): the same commands, encoded with the module generated
from ``proto/resonance/client.proto`` (``scripts/gen-proto``; no hand-written message encoding), sent as
binary WebSocket messages under the ``centrifuge-protobuf`` subprotocol. Each Command and Reply carries a
uvarint length prefix, and one message may hold several (as ``centrifugal/protocol``'s framing and the SDKs
do). The server's ping is an empty Reply (the single byte ``0x00``), answered with an empty Command.

Replies are turned into the same small dicts :mod:`bench.load.protocol` parses JSON into, holding only what
the tool reads, so the connection code and the shared helpers (``reply_result``, ``publication_of``,
``position_of``) serve both encodings. Publication data is the same JSON payload in both encodings (as an app
that sends JSON inside protobuf frames does), so both servers move the same bytes of data per message.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
from resonance_worker.domain import client_pb2 as pb

from bench.load.protocol import ProtocolError, StreamPosition

SUBPROTOCOL = "centrifuge-protobuf"
PONG_FRAME = b"\x00"  # an empty Command, length-prefixed


def uvarint(value: int) -> bytes:
    """The uvarint length prefix of the framing (not message encoding, which protoc's module does)."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _delimited(command: pb.Command) -> bytes:
    body = command.SerializeToString()
    return uvarint(len(body)) + body


def connect_command(command_id: int, token: str, *, name: str = "resonance-bench") -> bytes:
    return _delimited(pb.Command(id=command_id, connect=pb.ConnectRequest(token=token, name=name)))


def subscribe_command(command_id: int, channel: str, *, recover_from: StreamPosition | None = None) -> bytes:
    request = pb.SubscribeRequest(channel=channel)
    if recover_from is not None:
        request.recover = True
        request.epoch = recover_from.epoch
        request.offset = recover_from.offset
    return _delimited(pb.Command(id=command_id, subscribe=request))


def publish_command(command_id: int, channel: str, data: dict[str, Any]) -> bytes:
    return _delimited(
        pb.Command(id=command_id, publish=pb.PublishRequest(channel=channel, data=orjson.dumps(data)))
    )


def split_frame(frame: bytes) -> Iterator[dict[str, Any]]:
    """The Replies in one binary message, each as the dict :mod:`bench.load.protocol` would have parsed."""
    position, size = 0, len(frame)
    while position < size:
        length, shift = 0, 0
        while True:
            if position >= size:
                raise ProtocolError("truncated length prefix")
            byte = frame[position]
            position += 1
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
            if shift > 35:
                raise ProtocolError("length prefix longer than 5 bytes")
        end = position + length
        if end > size:
            raise ProtocolError(f"reply of {length} bytes runs past the message ({size - position} left)")
        try:
            reply = pb.Reply.FromString(frame[position:end])
        except Exception as exc:  # google.protobuf.message.DecodeError
            raise ProtocolError(f"not a Reply: {exc}") from None
        position = end
        yield _as_dict(reply)


def _data(raw: bytes) -> Any:
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return raw


def _publication(pub: pb.Publication) -> dict[str, Any]:
    return {"data": _data(pub.data), "offset": pub.offset}


def _as_dict(reply: pb.Reply) -> dict[str, Any]:
    if reply.HasField("push"):
        push = reply.push
        if push.HasField("pub"):
            return {"push": {"channel": push.channel, "pub": _publication(push.pub)}}
        return {"push": {"channel": push.channel}}
    out: dict[str, Any] = {}
    if reply.id:
        out["id"] = reply.id
    if reply.HasField("error"):
        out["error"] = {"code": reply.error.code, "message": reply.error.message}
    elif reply.HasField("connect"):
        out["connect"] = {"client": reply.connect.client, "pong": reply.connect.pong}
    elif reply.HasField("subscribe"):
        result = reply.subscribe
        out["subscribe"] = {
            "recoverable": result.recoverable,
            "epoch": result.epoch,
            "offset": result.offset,
            "recovered": result.recovered,
            "was_recovering": result.was_recovering,
            "publications": [_publication(p) for p in result.publications],
        }
    elif reply.HasField("publish"):
        out["publish"] = {}
    elif reply.id:
        out["result"] = {}  # a reply the tool never asks for
    return out
