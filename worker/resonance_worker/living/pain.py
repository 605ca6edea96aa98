"""What the node reports as pain, and what an error code or a disconnect says about the worker.

The node is built with a :class:`PainHooks` and calls it for every limit tripped, engine
operation failed, RPC handler crashed, error reply sent and connection ended. The default is this
no-op; with the living core on it is the thyroid (:class:`~resonance_worker.living.thyroid.
ThyroidService`). Which codes hurt, and how, is :func:`pain_of_error` and :func:`pain_of_disconnect`
(pure; docs/living-core.md, "Pain sources").
"""

from __future__ import annotations

from resonance_worker.domain.codes import Disconnect, ErrorCode
from resonance_worker.domain.thyroid import PainSource


class PainHooks:
    """Where the worker reports what hurts (this base class feels nothing)."""

    def feel(self, source: PainSource) -> None:
        """One pain signal (an engine failure, a limit hit, a failing RPC handler)."""

    def engine_failed(self, error: BaseException | None = None) -> None:
        """An engine (Redis) call failed with ``error`` (an open circuit's refusal is told apart)."""

    def engine_answered(self) -> None:
        """The engine answered the thyroid's probe (its periodic snapshot write and read)."""

    def error_reply(self, code: int) -> None:
        """An error reply was sent to a client."""

    def disconnected(self, reason: Disconnect | None) -> None:
        """A connection ended (``reason``: why the server closed it, None when the client left)."""


_AUTH_ERRORS = {ErrorCode.UNAUTHORIZED, ErrorCode.PERMISSION_DENIED, ErrorCode.TOKEN_EXPIRED}
# Counted elsewhere: 100 (engine failure → engine_timeout), 106 and 111 (limits → limit_hit).
_NOT_PROTOCOL = {ErrorCode.INTERNAL, ErrorCode.LIMIT_EXCEEDED, ErrorCode.TOO_MANY_REQUESTS}
_AUTH_DISCONNECTS = {3500, 3507}
_PROTOCOL_DISCONNECTS = {3501, 3502, 3509, 1009}


def pain_of_error(code: int) -> PainSource | None:
    """What an error reply to a client says about the worker's health."""
    if code in _AUTH_ERRORS:
        return PainSource.AUTH_FAILURE
    if code in _NOT_PROTOCOL:
        return None
    return PainSource.PROTOCOL_ERROR


def pain_of_disconnect(reason: Disconnect | None) -> PainSource | None:
    """What a connection closed by the server (with ``reason``) says; None when it says nothing."""
    if reason is None:
        return None
    if reason.code in _AUTH_DISCONNECTS:
        return PainSource.AUTH_FAILURE
    if reason.code in _PROTOCOL_DISCONNECTS:
        return PainSource.PROTOCOL_ERROR
    return None
