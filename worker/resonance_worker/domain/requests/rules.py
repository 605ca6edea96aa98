"""Field rules of requests, one function per rule, and the namespace rules both the session and
the server API apply (sans-I/O).

A field rule reads one field of a decoded JSON object and returns it typed, or raises
``RequestError``. Where copies of these rules once disagreed, the one rule kept here is the
Centrifugo protocol's (``centrifugal/protocol``: ``offset`` is a ``uint64``, ``epoch`` a
``string``, ``limit`` an ``int32``; its JSON decoders accept only a JSON number for a number
field):

- an integer is a JSON integer: ``true``/``false`` are not integers, nor are digit strings such
  as ``"5"`` (the SDKs - centrifuge-js, -python, -go - send offsets as JSON numbers);
- a stream offset is an integer from 0 to 2**64 - 1;
- an epoch is a string;
- ``data`` is required and is not ``null``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeGuard

import orjson

from resonance_worker.domain.channels import ChannelRules, NamespaceOptions
from resonance_worker.domain.codes import ErrorCode
from resonance_worker.domain.positions import Position

MAX_OFFSET = 2**64 - 1
"""Offsets are the protocol's ``uint64``."""


class RequestError(ValueError):
    """A request the rules refuse.

    ``code`` is the protocol error code to answer with and ``message`` says which field and why
    (the server API sends it; client error replies carry the code's own message, as Centrifugo).
    ``fatal``: the request is malformed; over a client connection it is not answered but closes
    the connection with 3501 "bad request" (as Centrifuge). The server API answers HTTP 400 with
    ``code`` whether fatal or not.
    """

    def __init__(self, code: ErrorCode, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fatal = fatal


def bad_request(message: str, *, fatal: bool = False) -> RequestError:
    return RequestError(ErrorCode.BAD_REQUEST, message, fatal=fatal)


def fields(value: object, name: str, *, fatal: bool = False) -> Mapping[str, Any]:
    """An object (``{...}``) field; absent, ``null`` or otherwise false-y is an empty one."""
    if not value:
        return {}
    if not isinstance(value, dict):
        raise bad_request(f"{name} must be an object", fatal=fatal)
    return value


# -- scalar fields ------------------------------------------------------------------------------


def is_integer(value: object) -> TypeGuard[int]:
    """A JSON integer: not a bool (Python's bool is an int), not a digit string, not a float."""
    return isinstance(value, int) and not isinstance(value, bool)


def integer(value: object, name: str, *, fatal: bool = False) -> int:
    if isinstance(value, int) and not isinstance(value, bool):  # is_integer, inlined: per command
        return value
    raise bad_request(f"{name} must be an integer", fatal=fatal)


def offset(value: object, *, fatal: bool = False) -> int:
    """A stream offset: an integer from 0 to 2**64 - 1."""
    number = integer(value, "offset", fatal=fatal)
    if not 0 <= number <= MAX_OFFSET:
        raise bad_request("offset must be from 0 to 2**64 - 1", fatal=fatal)
    return number


def string(value: object, name: str, *, fatal: bool = False) -> str:
    if not isinstance(value, str):
        raise bad_request(f"{name} must be a string", fatal=fatal)
    return value


def boolean(value: object, name: str, *, fatal: bool = False) -> bool:
    if not isinstance(value, bool):
        raise bad_request(f"{name} must be true or false", fatal=fatal)
    return value


def non_empty_string(value: object, name: str, *, fatal: bool = False) -> str:
    if not isinstance(value, str) or not value:
        raise bad_request(f"{name} must be a non-empty string", fatal=fatal)
    return value


def position(params: Mapping[str, Any], *, fatal: bool = False) -> Position:
    """``offset`` (default 0) and ``epoch`` (default ``""``) of an object, as a stream position."""
    return offset(params.get("offset", 0), fatal=fatal), string(params.get("epoch", ""), "epoch", fatal=fatal)


def since(value: object, *, fatal: bool = False) -> Position | None:
    """A ``since`` field: absent or ``null``, or an object ``{offset, epoch}``."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad_request("since must be an object {offset, epoch}", fatal=fatal)
    return position(value, fatal=fatal)


def history_limit(value: object) -> int:
    """How many publications to read: an integer, 0 (only the position) by default, -1 for all."""
    return integer(value, "limit")


def optional_token(value: object, *, fatal: bool = True) -> str:
    """A token field; absent, ``null`` or another false-y value means none (``""``)."""
    if not value:
        return ""
    return string(value, "token", fatal=fatal)


def channel(value: object) -> str:
    """A channel field: a non-empty string (malformed otherwise: fatal over a connection)."""
    if isinstance(value, str) and value:
        return value
    raise bad_request("channel must be a non-empty string", fatal=True)


def raw_data(value: object) -> bytes | None:
    """A ``data`` field as the raw JSON bytes to pass on (``None`` when absent or ``null``)."""
    return None if value is None else orjson.dumps(value)


def required_data(value: object) -> bytes:
    """A ``data`` field that must be there: absent or ``null`` is a bad request (as Centrifugo)."""
    data = raw_data(value)
    if data is None:
        raise bad_request("data is required")
    return data


# -- namespace rules ------------------------------------------------------------------------------


def require_valid_name(rules: ChannelRules, name: str) -> None:
    """107 for a name too long or with a newline (``ChannelRules.valid_name``)."""
    if not rules.valid_name(name):
        raise bad_request(f"{name[:64]!r} is not a valid channel name")


def channel_options(rules: ChannelRules, name: str) -> NamespaceOptions:
    """The options of a channel's namespace: 107 for an invalid name, 102 for an unknown namespace."""
    if not rules.valid_name(name):
        raise bad_request(f"{name[:64]!r} is not a valid channel name")
    options = rules.options(name)
    if options is None:
        raise RequestError(ErrorCode.UNKNOWN_CHANNEL, f"unknown namespace of channel {name!r}")
    return options


def require_presence(options: NamespaceOptions) -> None:
    if not options.presence:
        raise RequestError(ErrorCode.NOT_AVAILABLE, "presence is off in this namespace")


def require_history(options: NamespaceOptions) -> None:
    if not options.has_history:
        raise RequestError(ErrorCode.NOT_AVAILABLE, "history is off in this namespace")


def capped_limit(limit: int, cap: int) -> int:
    """A history limit within ``cap`` (``history_max_limit``; 0: no cap): "all" (negative) and
    anything over the cap become the cap, silently."""
    if cap and (limit < 0 or limit > cap):
        return cap
    return limit
