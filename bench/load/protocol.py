"""The Centrifugo client protocol v2 (JSON) as far as the load tool speaks it — pure, no I/O.

Frames are newline-delimited JSON objects (one WebSocket text message may carry several). Commands carry an
``id``; replies to them echo it; pushes (``{"push": {...}}``) carry no id; an empty object ``{}`` is the
server's ping, answered with ``{}`` when the connect reply said ``"pong": true``. The shapes follow
``centrifuge-python``'s client (``_construct_connect_command``, ``_construct_subscribe_command``,
``publish``, ``_process_reply``), and ``tests/bench`` checks the tool against that client and a real server.

Publications the tool sends carry a small JSON payload with the send time (``CLOCK_MONOTONIC``
nanoseconds, one clock for every process on the machine), the publishing node, the room and a per-room
sequence number, so a receiver computes publish-to-receive latency and finds gaps without asking anyone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import jwt
import orjson

PING_FRAME = b"{}"
PONG_FRAME = b"{}"


class ProtocolError(Exception):
    """A frame the tool cannot understand, or a reply carrying an error."""


@dataclasses.dataclass(frozen=True, slots=True)
class Payload:
    """What the tool publishes: who sent what, and when."""

    sent_ns: int
    node: int
    room: int
    seq: int
    padding: str = ""


def encode_payload(payload: Payload) -> dict[str, Any]:
    """The ``data`` object of a publication: short keys, so small messages stay small."""
    data: dict[str, Any] = {"t": payload.sent_ns, "n": payload.node, "r": payload.room, "q": payload.seq}
    if payload.padding:
        data["p"] = payload.padding
    return data


def decode_payload(data: Any) -> Payload:
    """The inverse of :func:`encode_payload`; anything else is a :class:`ProtocolError`."""
    if not isinstance(data, dict):
        raise ProtocolError(f"publication data is not an object: {data!r:.80}")
    try:
        sent, node, room, seq = data["t"], data["n"], data["r"], data["q"]
    except KeyError as missing:
        raise ProtocolError(f"publication data lacks {missing}: {data!r:.80}") from None
    if not all(type(v) is int for v in (sent, node, room, seq)):
        raise ProtocolError(f"publication data fields must be integers: {data!r:.80}")
    padding = data.get("p", "")
    if not isinstance(padding, str):
        raise ProtocolError("publication padding must be a string")
    return Payload(sent_ns=sent, node=node, room=room, seq=seq, padding=padding)


def padding_for(message_bytes: int) -> str:
    """Padding that brings an encoded payload to about ``message_bytes`` (the fixed part is ~60 bytes)."""
    return "x" * max(0, message_bytes - 60)


def mint_token(secret: str, user: str, *, now: float, ttl: float = 3600.0) -> str:
    """An HS256 connection JWT, the form both Centrifugo and our worker accept."""
    return jwt.encode({"sub": user, "iat": int(now), "exp": int(now + ttl)}, secret, algorithm="HS256")


def connect_command(command_id: int, token: str, *, name: str = "resonance-bench") -> bytes:
    return orjson.dumps({"id": command_id, "connect": {"token": token, "name": name}})


@dataclasses.dataclass(frozen=True, slots=True)
class StreamPosition:
    """Where a recoverable subscription stands in its channel's stream."""

    epoch: str
    offset: int


def subscribe_command(command_id: int, channel: str, *, recover_from: StreamPosition | None = None) -> bytes:
    subscribe: dict[str, Any] = {"channel": channel}
    if recover_from is not None:
        subscribe.update(recover=True, epoch=recover_from.epoch, offset=recover_from.offset)
    return orjson.dumps({"id": command_id, "subscribe": subscribe})


def publish_command(command_id: int, channel: str, data: dict[str, Any]) -> bytes:
    return orjson.dumps({"id": command_id, "publish": {"channel": channel, "data": data}})


def api_publish_body(channel: str, data: dict[str, Any]) -> bytes:
    """The body of Centrifugo's HTTP API ``POST /api/publish``."""
    return orjson.dumps({"channel": channel, "data": data})


def split_frame(frame: bytes | str) -> Iterator[dict[str, Any]]:
    """The JSON objects in one WebSocket message (newline-delimited; blank lines skipped)."""
    raw = frame.encode() if isinstance(frame, str) else frame
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ProtocolError(f"not JSON: {line[:80]!r}") from exc
        if not isinstance(obj, dict):
            raise ProtocolError(f"not a JSON object: {line[:80]!r}")
        yield obj


def reply_result(reply: dict[str, Any], kind: str) -> dict[str, Any]:
    """The ``kind`` result of a command reply, raising :class:`ProtocolError` on an error reply."""
    if "error" in reply:
        error = reply["error"]
        raise ProtocolError(f"{kind} failed: {error.get('code')} {error.get('message')}")
    result = reply.get(kind)
    if not isinstance(result, dict):
        raise ProtocolError(f"reply has no {kind} result: {str(reply)[:120]}")
    return result


@dataclasses.dataclass(frozen=True, slots=True)
class Publication:
    """A publication received in a push or in a subscribe reply's recovered list."""

    channel: str
    data: Any
    offset: int


def publication_of(push: dict[str, Any]) -> Publication | None:
    """The publication in a push object (``reply["push"]``), or ``None`` for other pushes."""
    pub = push.get("pub")
    if pub is None:
        return None
    return Publication(
        channel=push.get("channel", ""), data=pub.get("data"), offset=int(pub.get("offset", 0))
    )


def recovered_publications(channel: str, subscribe_result: dict[str, Any]) -> list[Publication]:
    return [
        Publication(channel=channel, data=pub.get("data"), offset=int(pub.get("offset", 0)))
        for pub in subscribe_result.get("publications", [])
    ]


def position_of(subscribe_result: dict[str, Any]) -> StreamPosition | None:
    """The stream position a subscribe reply reports, when the subscription is recoverable."""
    if not subscribe_result.get("recoverable"):
        return None
    return StreamPosition(
        epoch=str(subscribe_result.get("epoch", "")), offset=int(subscribe_result.get("offset", 0))
    )
