"""Which encoding a load connection speaks: the frame opcode, the subprotocol and the codec — pure."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

from bench.load import protobuf, protocol, wsframes
from bench.load.scenario import Encoding


@dataclasses.dataclass(frozen=True, slots=True)
class Wire:
    opcode: int  # the WebSocket opcode of every data message
    subprotocol: str | None  # offered in the handshake; the server must select it
    connect_command: Callable[..., bytes]
    subscribe_command: Callable[..., bytes]
    publish_command: Callable[..., bytes]
    split_frame: Callable[[bytes], Iterator[dict[str, Any]]]
    pong: bytes


JSON = Wire(
    opcode=wsframes.OP_TEXT,
    subprotocol=None,
    connect_command=protocol.connect_command,
    subscribe_command=protocol.subscribe_command,
    publish_command=protocol.publish_command,
    split_frame=protocol.split_frame,
    pong=protocol.PONG_FRAME,
)
PROTOBUF = Wire(
    opcode=wsframes.OP_BINARY,
    subprotocol=protobuf.SUBPROTOCOL,
    connect_command=protobuf.connect_command,
    subscribe_command=protobuf.subscribe_command,
    publish_command=protobuf.publish_command,
    split_frame=protobuf.split_frame,
    pong=protobuf.PONG_FRAME,
)


def wire_for(encoding: Encoding) -> Wire:
    return PROTOBUF if encoding is Encoding.PROTOBUF else JSON
