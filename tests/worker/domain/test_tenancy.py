"""Tenant isolation in the session: a connection's `tenant` claim confines it to
channels named `ns:<tenant>/...`; private and user-limited rules apply inside."""

from __future__ import annotations

import json
from typing import Any

import jwt
import pytest
from resonance_worker.domain import tenancy
from resonance_worker.domain.auth import TokenVerifier
from resonance_worker.domain.channels import ChannelRules, default_namespaces
from resonance_worker.domain.codes import Disconnects, ErrorCode
from resonance_worker.domain.operations import Connected, ConnectOp, StreamState, SubscribeOp
from resonance_worker.domain.session import Session, SessionConfig

SECRET = "a-tenancy-secret-that-is-long-enough-for-hs256"
T0 = 1_800_000_000.0


def test_split_tenant() -> None:
    assert tenancy.split_tenant("chat:acme/lobby") == ("acme", "chat:lobby")
    assert tenancy.split_tenant("chat:acme/$board") == ("acme", "chat:$board")
    assert tenancy.split_tenant("chat:lobby") == ("", "chat:lobby")
    assert tenancy.split_tenant("acme/lobby") == ("acme", "lobby")
    assert tenancy.split_tenant("lobby") == ("", "lobby")
    assert tenancy.personal_channel("acme", "alice") == "personal:acme/#alice"
    assert tenancy.personal_channel("", "alice") == "personal:#alice"
    assert tenancy.valid_tenant("acme") and not tenancy.valid_tenant("a/b") and not tenancy.valid_tenant("a#")


def session(
    tenant: object, *, isolation: bool = True, extra: dict[str, Any] | None = None
) -> tuple[Session, list[Any]]:
    s = Session(
        "c1",
        config=SessionConfig(tenant_isolation=isolation),
        rules=ChannelRules(default_namespaces()),
        verifier=TokenVerifier(hmac_secret=SECRET),
        now=T0,
    )
    body: dict[str, Any] = {"sub": "alice", **(extra or {})}
    if tenant is not None:
        body["tenant"] = tenant
    s.receive_data(json.dumps({"id": 1, "connect": {"token": jwt.encode(body, SECRET, "HS256")}}), T0)
    ops = s.effects()
    if ops and isinstance(ops[0], ConnectOp):
        streams = {sub.channel: StreamState(0, "epoch", []) for sub in ops[0].subscriptions}
        s.complete(ops[0], Connected(streams), T0)
        s.effects()
    frames = [json.loads(line) for f in s.data_to_send() for line in f.decode().split("\n")]
    return s, frames


def subscribe(s: Session, channel: str, cmd_id: int = 2, token: str | None = None) -> Any:
    params = {"channel": channel, **({"token": token} if token else {})}
    s.receive_data(json.dumps({"id": cmd_id, "subscribe": params}), T0)
    ops = s.effects()
    if s.closed:
        return ("closed", s.close_reason.code if s.close_reason else None)
    if ops:
        assert isinstance(ops[0], SubscribeOp)
        return ("subscribing", ops[0].channel)
    (reply,) = [json.loads(f) for f in s.data_to_send()]
    return ("error", reply["error"]["code"])


def test_personal_channel_is_in_the_tenant() -> None:
    _, frames = session("acme")
    assert "personal:acme/#alice" in frames[0]["connect"]["subs"]
    _, frames = session("acme", isolation=False)
    assert "personal:#alice" in frames[0]["connect"]["subs"]


@pytest.mark.parametrize(
    ("tenant", "channel", "outcome"),
    [
        ("acme", "chat:acme/lobby", ("subscribing", "chat:acme/lobby")),
        ("acme", "chat:globex/lobby", ("error", ErrorCode.PERMISSION_DENIED)),
        ("acme", "chat:lobby", ("error", ErrorCode.PERMISSION_DENIED)),
        (None, "chat:acme/lobby", ("error", ErrorCode.PERMISSION_DENIED)),
        (None, "chat:lobby", ("subscribing", "chat:lobby")),
        ("acme", "chat:acme/$board", ("error", ErrorCode.PERMISSION_DENIED)),  # private inside acme
        ("acme", "personal:acme/#bob", ("error", ErrorCode.PERMISSION_DENIED)),
        ("acme", "personal:globex/#alice", ("error", ErrorCode.PERMISSION_DENIED)),  # same id, other tenant
    ],
)
def test_subscriptions_stay_inside_the_tenant(tenant: str | None, channel: str, outcome: Any) -> None:
    s, _ = session(tenant)
    assert subscribe(s, channel) == outcome


def test_a_subscription_token_cannot_cross_tenants() -> None:
    s, _ = session("acme")
    foreign = jwt.encode({"sub": "alice", "channel": "chat:globex/$board"}, SECRET, "HS256")
    assert subscribe(s, "chat:globex/$board", token=foreign) == ("error", ErrorCode.PERMISSION_DENIED)
    own = jwt.encode({"sub": "alice", "channel": "chat:acme/$board"}, SECRET, "HS256")
    assert subscribe(s, "chat:acme/$board", 3, token=own) == ("subscribing", "chat:acme/$board")


def test_publish_presence_and_history_are_confined_too() -> None:
    s, _ = session("acme")
    for cmd_id, method in enumerate(("publish", "presence", "presence_stats", "history"), start=10):
        params: dict[str, Any] = {"channel": "chat:globex/lobby"}
        if method == "publish":
            params["data"] = 1
        s.receive_data(json.dumps({"id": cmd_id, method: params}), T0)
        assert s.effects() == []
        (reply,) = [json.loads(f) for f in s.data_to_send()]
        assert reply == {"id": cmd_id, "error": {"code": 103, "message": "permission denied"}}


def test_token_channels_outside_the_tenant_or_a_bad_tenant_refuse_the_connection() -> None:
    s, _ = session("acme", extra={"channels": ["chat:globex/news"]})
    assert s.close_reason == Disconnects.PERMISSION_DENIED
    s, _ = session("ac/me")
    assert s.close_reason == Disconnects.INVALID_TOKEN
    s, _ = session(7)  # not a string: an invalid token
    assert s.close_reason == Disconnects.INVALID_TOKEN
