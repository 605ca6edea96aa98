"""The node in process: control messages from the server API, and operations completed through
one outcome path (without sockets: fake connections around real sessions)."""

from __future__ import annotations

from typing import Any

import pytest
from resonance_worker.domain.auth import TokenVerifier
from resonance_worker.domain.codes import Disconnect, Disconnects, ErrorCode
from resonance_worker.domain.operations import Failed, PresenceOp, SendOp
from resonance_worker.domain.requests.server import (
    ApiDisconnectRequest,
    ApiUnsubscribeRequest,
    control_message,
)
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
