"""Every code the worker sends to clients, in one place.

They are the Centrifuge/Centrifugo codes (``centrifugal/centrifuge``
``errors.go``, ``disconnect.go``, ``unsubscribe.go``), because the official
SDKs act on them: an error reply marked ``temporary`` is retried, error 109
makes the SDK fetch a new token, a disconnect code in 3000..3499 or 4000..4499
means "reconnect", 3500..3999 and 4500..4999 mean "do not reconnect", and an
unsubscribe code >= 2500 makes the SDK resubscribe.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class ErrorCode(enum.IntEnum):
    """Error replies to a command (the connection stays open)."""

    INTERNAL = 100
    UNAUTHORIZED = 101
    UNKNOWN_CHANNEL = 102
    PERMISSION_DENIED = 103
    METHOD_NOT_FOUND = 104
    ALREADY_SUBSCRIBED = 105
    LIMIT_EXCEEDED = 106
    BAD_REQUEST = 107
    NOT_AVAILABLE = 108
    TOKEN_EXPIRED = 109
    EXPIRED = 110
    TOO_MANY_REQUESTS = 111
    UNRECOVERABLE_POSITION = 112

    @property
    def message(self) -> str:
        return self.name.lower().replace("_", " ")

    @property
    def temporary(self) -> bool:
        """The SDK retries a temporary error with backoff."""
        return self in (ErrorCode.INTERNAL, ErrorCode.TOO_MANY_REQUESTS)


MAX_REASON_BYTES = 123
"""A WebSocket close frame's reason: at most 123 bytes of UTF-8 (RFC 6455 5.5)."""


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Why the server closes a connection: sent as the WebSocket close code and reason. Two are
    the same disconnect when their codes are (the SDK acts on the code; the reason is for people)."""

    code: int
    reason: str = field(compare=False)

    def because(self, detail: str) -> Disconnect:
        """This disconnect with what exactly was wrong after its reason (``bad request: ...``),
        cut to fit a close frame. Say what was wrong, never a secret (a token, a key)."""
        reason = f"{self.reason}: {detail}"
        if len(reason.encode()) > MAX_REASON_BYTES:
            reason = reason.encode()[: MAX_REASON_BYTES - 3].decode(errors="ignore") + "..."
        return Disconnect(self.code, reason)

    @property
    def reconnect(self) -> bool:
        """What the SDK does with this code (it decides from the range alone)."""
        return not (3500 <= self.code < 4000 or 4500 <= self.code < 5000)


class Disconnects:
    """The disconnect codes, Centrifuge's values and reasons."""

    CONNECTION_CLOSED = Disconnect(3000, "connection closed")
    # Reconnect allowed (3000..3499).
    SHUTDOWN = Disconnect(3001, "shutdown")
    SERVER_ERROR = Disconnect(3004, "internal server error")
    EXPIRED = Disconnect(3005, "connection expired")
    SUB_EXPIRED = Disconnect(3006, "subscription expired")
    SLOW = Disconnect(3008, "slow")
    WRITE_ERROR = Disconnect(3009, "write error")
    INSUFFICIENT_STATE = Disconnect(3010, "insufficient state")
    FORCE_RECONNECT = Disconnect(3011, "force reconnect")
    NO_PONG = Disconnect(3012, "no pong")
    TOO_MANY_REQUESTS = Disconnect(3013, "too many requests")
    # Terminal (3500..3999): the SDK does not reconnect.
    INVALID_TOKEN = Disconnect(3500, "invalid token")
    BAD_REQUEST = Disconnect(3501, "bad request")
    STALE = Disconnect(3502, "stale")
    FORCE_NO_RECONNECT = Disconnect(3503, "force disconnect")
    CONNECTION_LIMIT = Disconnect(3504, "connection limit")
    CHANNEL_LIMIT = Disconnect(3505, "channel limit")
    INAPPROPRIATE_PROTOCOL = Disconnect(3506, "inappropriate protocol")
    """Publication data this connection's encoding cannot carry: bytes that are not JSON, from a
    protobuf client, for a JSON subscriber (as Centrifugo)."""
    PERMISSION_DENIED = Disconnect(3507, "permission denied")
    NOT_AVAILABLE = Disconnect(3508, "not available")
    TOO_MANY_ERRORS = Disconnect(3509, "too many errors")
    # WebSocket-level: a frame over the size limit (RFC 6455 1009; the SDK maps
    # it to "message size limit" and does not reconnect).
    MESSAGE_TOO_BIG = Disconnect(1009, "message too big")

    @classmethod
    def all(cls) -> list[Disconnect]:
        return [v for v in vars(cls).values() if isinstance(v, Disconnect)]


class UnsubscribeCode(enum.IntEnum):
    """Codes of the unsubscribe push (below 2500: stay unsubscribed; from 2500: resubscribe)."""

    CLIENT = 0
    DISCONNECT = 1
    SERVER = 2000
    INSUFFICIENT_STATE = 2500
    EXPIRED = 2501
    STATE_INVALIDATED = 2502

    @property
    def reason(self) -> str:
        return {
            0: "client unsubscribed",
            1: "client disconnected",
            2000: "server unsubscribe",
            2500: "insufficient state",
            2501: "subscription expired",
            2502: "state invalidated",
        }[int(self)]
