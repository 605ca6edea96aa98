"""The node in process: control messages from the server API, and operations completed through
one outcome path (without sockets: fake connections around real sessions)."""

from __future__ import annotations

from typing import Any

import pytest
from resonance_worker.domain.auth import TokenVerifier
from resonance_worker.domain.codes import Disconnect, Disconnects, ErrorCode
from resonance_worker.domain.operations import Failed, PresenceOp, SendOp
from resonance_worker.domain.protobuf import PROTOBUF_CODEC
from resonance_worker.domain.protocol import JSON_CODEC, Codec
from resonance_worker.domain.requests.server import (
    ApiDisconnectRequest,
    ApiUnsubscribeRequest,
    control_message,
)
from resonance_worker.engines.base import Publication, StreamPosition
from resonance_worker.engines.memory import MemoryEngine
from resonance_worker.errors import EngineError
from resonance_worker.metrics import WorkerMetrics
from resonance_worker.settings import WorkerSettings
from resonance_worker.transport.node import Node

from tests.harness.worker import JWT_SECRET


class FakeSession:
    def __init__(self) -> None:
        self.unsubscribed: list[str] = []
        self.completed: list[tuple[Any, Any]] = []
        self.user = "u"

    def server_unsubscribe(self, channel: str) -> None:
        self.unsubscribed.append(channel)

    def complete(self, op: Any, outcome: Any, now: float) -> bool:
        self.completed.append((op, outcome))
        return True


class FakeConnection:
    def __init__(self) -> None:
        self.session = FakeSession()
        self.client_id = "c1"
        self.reasons: list[Disconnect] = []
        self.pumped = self.woken = 0

    def disconnect(self, reason: Disconnect) -> None:
        self.reasons.append(reason)

    def pump(self) -> None:
        self.pumped += 1

    def wake(self) -> None:
        self.woken += 1


def node(**settings: Any) -> Node:
    return Node(
        WorkerSettings(_env_file=None, jwt_secret=JWT_SECRET, **settings),  # type: ignore[call-arg]
        MemoryEngine(sweep_interval=0),
        WorkerMetrics(),
        TokenVerifier(hmac_secret=JWT_SECRET),
        rpc_methods={},
    )


def test_control_messages_reach_the_users_connections() -> None:
    n = node()
    conn = FakeConnection()
    n.by_user["u"] = {conn}  # type: ignore[arg-type]
    n.on_control(control_message(ApiDisconnectRequest("u", 4500, "bye")))
    n.on_control(control_message(ApiUnsubscribeRequest("u", "chat:a")))
    n.on_control(control_message(ApiDisconnectRequest("someone-else")))
    assert conn.reasons == [Disconnect(4500, "bye")]
    assert conn.session.unsubscribed == ["chat:a"] and conn.pumped == 1


@pytest.mark.parametrize("payload", [b"{", b"[1]", b'{"op": "explode", "user": "u"}'])
def test_a_malformed_control_message_is_ignored(payload: bytes, caplog: pytest.LogCaptureFixture) -> None:
    n = node()
    conn = FakeConnection()
    n.by_user["u"] = {conn}  # type: ignore[arg-type]
    n.on_control(payload)
    assert conn.reasons == [] and conn.session.unsubscribed == []
    assert "malformed control message ignored" in caplog.text


async def test_every_operation_is_completed_once_with_its_outcome() -> None:
    n = node()
    conn = FakeConnection()
    presence = PresenceOp(3, "chat:a")
    await n.perform(conn, presence)  # type: ignore[arg-type]
    ((op, outcome),) = conn.session.completed
    assert op is presence and outcome.presence == {}
    send = SendOp(0, b"1", "u", "c1")
    await n.perform(conn, send)  # type: ignore[arg-type]
    assert conn.session.completed[-1] == (send, Failed(Disconnects.NOT_AVAILABLE))
    assert conn.woken == 2


async def test_an_engine_failure_completes_the_operation_with_a_temporary_error() -> None:
    n = node()

    async def unavailable(channel: str) -> Any:
        raise EngineError("down")

    n.engine.presence = unavailable  # type: ignore[method-assign]
    conn = FakeConnection()
    op = PresenceOp(3, "chat:a")
    await n.perform(conn, op)  # type: ignore[arg-type]
    assert conn.session.completed == [(op, Failed(ErrorCode.INTERNAL))]


class CountingCodec:
    """A real codec that counts the publication pushes it encodes."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.encoded = 0

    def publication_push(self, channel: str, pub: Publication) -> bytes | None:
        self.encoded += 1
        return self.codec.publication_push(channel, pub)


class FanOutSession:
    def __init__(self, codec: CountingCodec) -> None:
        self.codec = codec
        self.frames: list[bytes] = []
        self.closed: list[Disconnect] = []

    def deliver_publication(self, channel: str, frame: bytes, offset: int, epoch: str) -> None:
        self.frames.append(frame)

    def close(self, reason: Disconnect) -> None:
        self.closed.append(reason)


@pytest.mark.parametrize(
    ("data", "json_closed"), [(b'{"m":1}', False), (b"\xff\x00", True)], ids=["json-data", "not-json"]
)
def test_a_publication_is_encoded_once_per_encoding_in_its_channel(data: bytes, json_closed: bool) -> None:
    n = node()
    json_codec, protobuf_codec = CountingCodec(JSON_CODEC), CountingCodec(PROTOBUF_CODEC)
    conns = [FakeConnection() for _ in range(6)]
    for i, conn in enumerate(conns):  # the two encodings interleaved in the channel's order
        conn.session = FanOutSession(json_codec if i % 2 else protobuf_codec)  # type: ignore[assignment]
    n.local_subs["chat:mixed"] = {f"c{i}": conn for i, conn in enumerate(conns)}  # type: ignore[misc]
    n.on_publication("chat:mixed", Publication(data, offset=1), StreamPosition(1, "e"))
    assert (json_codec.encoded, protobuf_codec.encoded) == (1, 1)
    sessions: list[FanOutSession] = [conn.session for conn in conns]  # type: ignore[misc]
    json_readers = [s for s in sessions if s.codec is json_codec]
    protobuf_readers = [s for s in sessions if s.codec is protobuf_codec]
    assert len({id(s.frames[0]) for s in protobuf_readers}) == 1  # the same bytes object for all
    if json_closed:
        assert all(s.closed == [Disconnects.INAPPROPRIATE_PROTOCOL] and not s.frames for s in json_readers)
    else:
        assert len({id(s.frames[0]) for s in json_readers}) == 1 and not any(s.closed for s in sessions)
    assert all(conn.woken == 1 for conn in conns)
