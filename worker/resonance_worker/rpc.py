"""The RPC extension point: named methods clients call with the protocol's
``rpc`` command. Other parts of the product (thyroid, emotion, biometrics)
register an async handler under a method name::

    async def handle(call: RpcCall) -> Any: ...
    create_app(settings, rpc_methods={"thyroid.estimate": handle})

A handler returns any JSON-serialisable value (sent as the reply's ``data``)
or raises ``RpcError`` with a protocol error code. Anything else it raises is
logged and answered with error 100 (internal, temporary).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from resonance_worker.domain.codes import ErrorCode
from resonance_worker.domain.consent import DataKind


@dataclass(frozen=True, slots=True)
class RpcCall:
    """Who calls and with what (``data`` is the decoded JSON, or ``None``)."""

    method: str
    data: Any
    user: str
    client: str
    consent: frozenset[DataKind] | None = None
    """The caller's token ``consent`` claim (None: absent); see ``domain.consent``."""


class RpcError(Exception):
    """Raised by a handler to answer with a protocol error."""

    def __init__(self, code: ErrorCode, message: str | None = None) -> None:
        super().__init__(message or code.message)
        self.code = code
        self.message = message or code.message


RpcHandler = Callable[[RpcCall], Awaitable[Any]]


async def echo(call: RpcCall) -> Any:
    """Returns its data: a liveness check for clients."""
    return call.data


async def whoami(call: RpcCall) -> Any:
    """The caller's user and client id."""
    return {"user": call.user, "client": call.client}


BUILTIN_METHODS: Mapping[str, RpcHandler] = {"echo": echo, "whoami": whoami}
