"""What the session fuzzes share, whatever the encoding: one connection's life driven frame by frame
(``live``), its operations answered as the node answers them when the engine is away (``settle``), and
the invariants checked after every step (``check_output``): every error code and close code is a
documented one, and a closed session stays silent. A ``Wire`` says how one encoding (JSON, protobuf)
writes the frames the fuzz needs and reads the error codes of the replies."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import jwt
from resonance_worker.domain.auth import TokenVerifier
from resonance_worker.domain.channels import ChannelRules, default_namespaces
from resonance_worker.domain.codes import Disconnects, ErrorCode
from resonance_worker.domain.operations import Connected, ConnectOp, Failed
from resonance_worker.domain.protocol import Codec
from resonance_worker.domain.session import Session, SessionConfig

SECRET = "a-fuzzing-secret-that-is-long-enough-for-hs256"
T0 = 1_800_000_000.0
DISCONNECT_CODES = {
    value.code for value in vars(Disconnects).values() if hasattr(value, "code") and hasattr(value, "reason")
}
ERROR_CODES = {int(code) for code in ErrorCode}


@dataclass(frozen=True)
class Wire:
    """One encoding as the fuzz speaks it."""

    codec: Codec
    connect: Callable[[str], str | bytes]
    """The frame of a connect command with id 1 carrying this token."""
    after_close: str | bytes
    """A harmless command sent to a closed session, which must answer nothing."""
    error_codes: Callable[[bytes], Iterable[int]]
    """The error codes of the replies in one written frame (raising if the frame is malformed)."""


def fresh(wire: Wire) -> Session:
    return Session(
        "fuzz",
        config=SessionConfig(personal_channel=False),
        rules=ChannelRules(default_namespaces()),
        verifier=TokenVerifier(hmac_secret=SECRET),
        now=T0,
        codec=wire.codec,
    )


def connected(wire: Wire) -> Session:
    session = fresh(wire)
    session.receive_data(wire.connect(jwt.encode({"sub": "alice"}, SECRET, "HS256")), T0)
    (op,) = session.effects()
    assert isinstance(op, ConnectOp)
    session.complete(op, Connected({}), T0)
    session.data_to_send()
    return session


def settle(session: Session, now: float) -> None:
    """Answer every operation the session asked for with a temporary failure, as the node does when the
    engine is away, so queued commands run too."""
    for _ in range(50):
        ops = session.effects()
        if not ops:
            return
        for op in ops:
            if isinstance(op, ConnectOp):
                session.complete(op, Connected({}), now)
            else:
                session.complete(op, Failed(ErrorCode.INTERNAL), now)


def check_output(session: Session, wire: Wire) -> None:
    for frame in session.data_to_send():
        for code in wire.error_codes(frame):
            assert code in ERROR_CODES
    if session.closed:
        assert session.close_reason is not None
        assert session.close_reason.code in DISCONNECT_CODES


def live(wire: Wire, frames: Sequence[str | bytes], *, signed_in: bool) -> Session:
    """One connection's life: each frame received, its operations settled, the timers run, the output
    checked after each step; a session that closed answers nothing afterwards."""
    session = connected(wire) if signed_in else fresh(wire)
    now = T0
    for data in frames:
        now += 0.01
        session.receive_data(data, now)
        settle(session, now)
        check_output(session, wire)
        session.tick(now)
        check_output(session, wire)
    if session.closed:
        session.receive_data(wire.after_close, now)
        assert session.data_to_send() == [] and session.effects() == []
    return session
