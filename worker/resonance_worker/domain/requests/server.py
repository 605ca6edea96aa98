"""The server API's methods (``POST /api/<method>`` with a JSON object body) as typed requests.

``presence``, ``presence_stats`` and ``history`` are the client protocol's requests, parsed by
the same functions, so a rule cannot differ between the two paths. A refused body raises
``RequestError``; the API answers HTTP 400 with its code and message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from resonance_worker.domain.requests import rules
from resonance_worker.domain.requests.client import (
    HistoryRequest,
    PresenceRequest,
    PresenceStatsRequest,
    parse_history,
    parse_presence,
    parse_presence_stats,
)

DISCONNECT_CODES = range(3000, 5000)
"""What the server API may disconnect with (the SDKs reconnect below 3500 and in 4000..4499)."""


@dataclass(frozen=True, slots=True)
class ApiPublishRequest:
    channel: str
    data: bytes
    idempotency_key: str | None = None
    tags: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class ApiBroadcastRequest:
    channels: tuple[str, ...]
    data: bytes
    idempotency_key: str | None = None
    tags: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class ApiDisconnectRequest:
    user: str
    code: int = 3503
    reason: str = "force disconnect"


@dataclass(frozen=True, slots=True)
class ApiUnsubscribeRequest:
    user: str
    channel: str


@dataclass(frozen=True, slots=True)
class ApiInfoRequest:
    """``info`` {}: the nodes (the web console's admin view, as Centrifugo's ``info``)."""


@dataclass(frozen=True, slots=True)
class ApiChannelsRequest:
    """``channels`` {pattern?}: channels with subscribers, ``pattern`` a glob (``*``, ``?``, ``[…]``)."""

    pattern: str | None = None


@dataclass(frozen=True, slots=True)
class ApiConnectionsRequest:
    """``connections`` {user?}: the connections, only ``user``'s when given."""

    user: str | None = None


@dataclass(frozen=True, slots=True)
class UserExportRequest:
    """``user.export``: everything kept about ``user`` (docs/data-rights.md)."""

    user: str


@dataclass(frozen=True, slots=True)
class UserEraseRequest:
    """``user.erase``: remove everything kept about ``user``; answers what was removed."""

    user: str


ServerRequest = (
    ApiPublishRequest
    | ApiBroadcastRequest
    | PresenceRequest
    | PresenceStatsRequest
    | HistoryRequest
    | ApiDisconnectRequest
    | ApiUnsubscribeRequest
    | ApiInfoRequest
    | ApiChannelsRequest
    | ApiConnectionsRequest
    | UserExportRequest
    | UserEraseRequest
)


def _idempotency_key(body: Mapping[str, Any]) -> str | None:
    key = body.get("idempotency_key")
    return None if key is None else rules.string(key, "idempotency_key")


def _tags(body: Mapping[str, Any]) -> dict[str, str] | None:
    tags = body.get("tags")
    if tags is not None and (
        not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values())
    ):
        raise rules.bad_request("tags must map strings to strings")
    return tags


def _user(body: Mapping[str, Any]) -> str:
    return rules.non_empty_string(body.get("user"), "user")


def parse_publish(body: Mapping[str, Any]) -> ApiPublishRequest:
    return ApiPublishRequest(
        rules.channel(body.get("channel")),
        rules.required_data(body.get("data")),
        _idempotency_key(body),
        _tags(body),
    )


def parse_broadcast(body: Mapping[str, Any]) -> ApiBroadcastRequest:
    channels = body.get("channels")
    if not isinstance(channels, list) or not channels:
        raise rules.bad_request("channels must be a non-empty list")
    return ApiBroadcastRequest(
        tuple(rules.channel(c) for c in channels),
        rules.required_data(body.get("data")),
        _idempotency_key(body),
        _tags(body),
    )


def parse_disconnect(body: Mapping[str, Any]) -> ApiDisconnectRequest:
    user = _user(body)
    code = body.get("code", 3503)
    if not rules.is_integer(code) or code not in DISCONNECT_CODES:
        raise rules.bad_request("code must be an integer in 3000..4999")
    return ApiDisconnectRequest(user, code, str(body.get("reason", "force disconnect")))


def parse_unsubscribe(body: Mapping[str, Any]) -> ApiUnsubscribeRequest:
    return ApiUnsubscribeRequest(_user(body), rules.channel(body.get("channel")))


def parse_info(body: Mapping[str, Any]) -> ApiInfoRequest:
    return ApiInfoRequest()


def parse_channels(body: Mapping[str, Any]) -> ApiChannelsRequest:
    pattern = body.get("pattern")
    return ApiChannelsRequest(None if pattern is None else rules.non_empty_string(pattern, "pattern"))


def parse_connections(body: Mapping[str, Any]) -> ApiConnectionsRequest:
    user = body.get("user")
    return ApiConnectionsRequest(None if user is None else rules.string(user, "user"))


def parse_user_export(body: Mapping[str, Any]) -> UserExportRequest:
    return UserExportRequest(_user(body))


def parse_user_erase(body: Mapping[str, Any]) -> UserEraseRequest:
    return UserEraseRequest(_user(body))


SERVER_REQUESTS: Mapping[str, Callable[[Mapping[str, Any]], ServerRequest]] = {
    "publish": parse_publish,
    "broadcast": parse_broadcast,
    "presence": parse_presence,
    "presence_stats": parse_presence_stats,
    "history": parse_history,
    "disconnect": parse_disconnect,
    "unsubscribe": parse_unsubscribe,
    "info": parse_info,
    "channels": parse_channels,
    "connections": parse_connections,
    "user.export": parse_user_export,
    "user.erase": parse_user_erase,
}
"""The parser of each server API method; a method not here is answered 404 (104)."""

ControlRequest = ApiDisconnectRequest | ApiUnsubscribeRequest
"""What the server API asks of every worker, through the engine's control channel."""


def control_message(request: ControlRequest) -> bytes:
    """The control message relaying ``request`` to every worker: its fields, and the method's
    name under ``op``."""
    return orjson.dumps({"op": _CONTROL_OPS[type(request)], **asdict(request)})


def parse_control(payload: bytes) -> ControlRequest:
    """A control message back into its request, by the same rules; ``RequestError`` if it is
    not one (the worker ignores it)."""
    try:
        message = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise rules.bad_request("a control message must be JSON") from None
    parse = _CONTROLS.get(message.get("op")) if isinstance(message, dict) else None
    if parse is None:
        raise rules.bad_request("a control message must be an object with a known op")
    return parse(message)


_CONTROLS: Mapping[object, Callable[[Mapping[str, Any]], ControlRequest]] = {
    "disconnect": parse_disconnect,
    "unsubscribe": parse_unsubscribe,
}
_CONTROL_OPS: Mapping[type, str] = {ApiDisconnectRequest: "disconnect", ApiUnsubscribeRequest: "unsubscribe"}
