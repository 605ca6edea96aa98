"""Which encoding of the client protocol a connection speaks, chosen at the handshake (sans-I/O).

As Centrifuge: the WebSocket subprotocol decides - ``centrifuge-json`` or ``centrifuge-protobuf``, the
first the client offers that this worker speaks - and without one the query's ``format`` (or
``cf_protocol``) does: ``protobuf`` or ``json``; JSON is the default. A client that offers only
subprotocols this worker does not speak is refused (not given a JSON session it cannot parse), with a
reason naming what the worker speaks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from resonance_worker.domain.protobuf import PROTOBUF_CODEC
from resonance_worker.domain.protocol import JSON_CODEC, Codec

SUBPROTOCOLS: Mapping[str, Codec] = {"centrifuge-json": JSON_CODEC, "centrifuge-protobuf": PROTOBUF_CODEC}
"""Each WebSocket subprotocol this worker speaks, and its codec."""

FORMATS: Mapping[str, Codec] = {"json": JSON_CODEC, "protobuf": PROTOBUF_CODEC}
"""The values of the ``format`` / ``cf_protocol`` query parameter."""

FORMAT_PARAMETERS = ("format", "cf_protocol")


class UnsupportedEncodingError(ValueError):
    """The handshake asks only for encodings this worker does not speak; the message says what it speaks."""


@dataclass(frozen=True, slots=True)
class Negotiated:
    codec: Codec
    subprotocol: str | None
    """The subprotocol to answer with (None: the client offered none)."""


def offered_subprotocols(headers: Sequence[str]) -> list[str]:
    """The subprotocols of every ``Sec-WebSocket-Protocol`` header, in the client's order."""
    return [p.strip() for header in headers for p in header.split(",") if p.strip()]


def negotiate(offered: Sequence[str], query: Mapping[str, str]) -> Negotiated:
    """The codec for a handshake offering ``offered`` subprotocols with ``query`` parameters;
    ``UnsupportedEncodingError`` when none of what it asks for is spoken here."""
    if offered:
        for subprotocol in offered:
            codec = SUBPROTOCOLS.get(subprotocol)
            if codec is not None:
                return Negotiated(codec, subprotocol)
        shown = ", ".join(repr(p[:40]) for p in offered[:4])
        raise UnsupportedEncodingError(
            f"no subprotocol offered ({shown}) is spoken here; this worker speaks {', '.join(SUBPROTOCOLS)}"
        )
    for parameter in FORMAT_PARAMETERS:
        value = query.get(parameter)
        if value:
            codec = FORMATS.get(value)
            if codec is None:
                spoken = " or ".join(FORMATS)
                raise UnsupportedEncodingError(f"{parameter}={value[:40]!r} is not spoken here; use {spoken}")
            return Negotiated(codec, None)
    return Negotiated(JSON_CODEC, None)
