"""The client protocol's commands as typed requests, and ``Command``: what the session works on.

A codec (``resonance_worker.domain.protocol`` for JSON) turns a frame into ``Command`` objects:
the command id, its method and its typed request. A request the rules refuse becomes
``Malformed`` carrying the ``RequestError``, so the session answers it in its turn, after the
commands before it. Field names follow ``centrifugal/protocol`` ``client.proto``.

How bad a malformed field is follows what the worker always did (and Centrifuge mostly does):
a missing channel, a bad token type or a bad recovery position closes the connection (3501);
a bad history ``limit``/``since``/``reverse``, RPC ``method`` or publish ``data`` is answered
with error 107.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from resonance_worker.domain.positions import Position
from resonance_worker.domain.requests import rules
from resonance_worker.domain.requests.rules import RequestError

REJECT_UNRECOVERED_FLAG = 2
"""SubscribeRequest.flag bit: answer 112 instead of ``recovered: false``."""


@dataclass(frozen=True, slots=True)
class SubscribeOptions:
    """What a subscriber asks of a subscription (in ``subscribe``, and per channel in
    ``connect.subs`` for server-side ones); the namespace decides what it gets."""

    recoverable: bool = False
    positioned: bool = False
    join_leave: bool = False
    since: Position | None = None
    """Where to recover from: set when the client sent ``recover`` (with ``offset``, ``epoch``)."""
    reject_unrecovered: bool = False


NO_OPTIONS = SubscribeOptions()
_OPTION_FIELDS = frozenset(("recoverable", "positioned", "join_leave", "recover", "flag"))


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    token: str = ""
    subs: Mapping[str, SubscribeOptions] = field(default_factory=dict)
    traceparent: str = ""
    """A W3C ``traceparent`` from the connect ``data`` (``{"traceparent": …}``): the connection's
    commands are spans of that trace. Anything else in ``data`` is ignored, as before."""
    name: str = ""
    """The client's name (Centrifugo ``name``: the SDK's, e.g. ``js``, ``python``, or the app's);
    feature flags target it as the platform."""


@dataclass(frozen=True, slots=True)
class SubscribeRequest:
    channel: str
    token: str = ""
    options: SubscribeOptions = NO_OPTIONS


@dataclass(frozen=True, slots=True)
class UnsubscribeRequest:
    channel: str


@dataclass(frozen=True, slots=True)
class PublishRequest:
    channel: str
    data: bytes


@dataclass(frozen=True, slots=True)
class PresenceRequest:
    channel: str


@dataclass(frozen=True, slots=True)
class PresenceStatsRequest:
    channel: str


@dataclass(frozen=True, slots=True)
class HistoryRequest:
    channel: str
    limit: int = 0
    since: Position | None = None
    reverse: bool = False


@dataclass(frozen=True, slots=True)
class RpcRequest:
    method: str = ""
    data: bytes | None = None


@dataclass(frozen=True, slots=True)
class SendRequest:
    data: bytes | None = None


@dataclass(frozen=True, slots=True)
class RefreshRequest:
    token: str


@dataclass(frozen=True, slots=True)
class SubRefreshRequest:
    channel: str
    token: str = ""


@dataclass(frozen=True, slots=True)
class PingRequest:
    pass


@dataclass(frozen=True, slots=True)
class Pong:
    """The client's answer to a server ping (an empty command)."""


@dataclass(frozen=True, slots=True)
class Malformed:
    """A command whose request the rules refused; the session answers it with ``error``."""

    error: RequestError


ClientRequest = (
    ConnectRequest
    | SubscribeRequest
    | UnsubscribeRequest
    | PublishRequest
    | PresenceRequest
    | PresenceStatsRequest
    | HistoryRequest
    | RpcRequest
    | SendRequest
    | RefreshRequest
    | SubRefreshRequest
    | PingRequest
    | Pong
    | Malformed
)


@dataclass(slots=True)
class Command:
    """One decoded command: its id (0 for ``send`` and the pong), method (``""`` for the pong)
    and typed request. (An envelope made for every command: slotted, not frozen, whose
    ``__init__`` costs several times more.)"""

    id: int
    method: str
    request: ClientRequest

    @property
    def is_pong(self) -> bool:
        return self.method == ""


PONG = Command(0, "", Pong())


# -- one parser per method ------------------------------------------------------------------------


def subscribe_options(params: Mapping[str, Any]) -> SubscribeOptions:
    """``recoverable``, ``positioned``, ``join_leave`` and ``recover`` are read as flags (any
    JSON value, by truthiness); with ``recover``, ``offset`` and ``epoch`` must be a stream
    position (else 3501); ``flag`` bit 2 asks for 112 when recovery fails."""
    if not (_OPTION_FIELDS & params.keys()):
        return NO_OPTIONS  # the common case, without a new object
    flag = params.get("flag", 0)
    return SubscribeOptions(
        recoverable=bool(params.get("recoverable")),
        positioned=bool(params.get("positioned")),
        join_leave=bool(params.get("join_leave")),
        since=rules.position(params, fatal=True) if params.get("recover") else None,
        reject_unrecovered=rules.is_integer(flag) and bool(flag & REJECT_UNRECOVERED_FLAG),
    )


def parse_connect(params: Mapping[str, Any]) -> ConnectRequest:
    subs = rules.fields(params.get("subs"), "subs", fatal=True)
    return ConnectRequest(
        token=rules.optional_token(params.get("token")),
        subs={
            channel: subscribe_options(rules.fields(entry, "a subs entry", fatal=True))
            for channel, entry in subs.items()
        },
        traceparent=_traceparent(params.get("data")),
        name=_client_name(params.get("name")),
    )


def _client_name(value: object) -> str:
    return value if isinstance(value, str) and len(value) <= 64 else ""


def _traceparent(data: object) -> str:
    value = data.get("traceparent") if isinstance(data, Mapping) else None
    return value if isinstance(value, str) and 0 < len(value) <= 128 and value.isascii() else ""


def parse_subscribe(params: Mapping[str, Any]) -> SubscribeRequest:
    return SubscribeRequest(
        rules.channel(params.get("channel")),
        rules.optional_token(params.get("token")),
        subscribe_options(params),
    )


def parse_unsubscribe(params: Mapping[str, Any]) -> UnsubscribeRequest:
    return UnsubscribeRequest(rules.channel(params.get("channel")))


def parse_publish(params: Mapping[str, Any]) -> PublishRequest:
    return PublishRequest(rules.channel(params.get("channel")), rules.required_data(params.get("data")))


def parse_presence(params: Mapping[str, Any]) -> PresenceRequest:
    return PresenceRequest(rules.channel(params.get("channel")))


def parse_presence_stats(params: Mapping[str, Any]) -> PresenceStatsRequest:
    return PresenceStatsRequest(rules.channel(params.get("channel")))


def parse_history(params: Mapping[str, Any]) -> HistoryRequest:
    """Shared with the server API's ``history``: the same fields, the same rules."""
    return HistoryRequest(
        rules.channel(params.get("channel")),
        limit=rules.history_limit(params.get("limit", 0)),
        since=rules.since(params.get("since")),
        reverse=rules.boolean(params.get("reverse", False), "reverse"),
    )


def parse_rpc(params: Mapping[str, Any]) -> RpcRequest:
    return RpcRequest(rules.string(params.get("method", ""), "method"), rules.raw_data(params.get("data")))


def parse_send(params: Mapping[str, Any]) -> SendRequest:
    return SendRequest(rules.raw_data(params.get("data")))


def parse_refresh(params: Mapping[str, Any]) -> RefreshRequest:
    return RefreshRequest(rules.non_empty_string(params.get("token"), "token", fatal=True))


def parse_sub_refresh(params: Mapping[str, Any]) -> SubRefreshRequest:
    return SubRefreshRequest(
        rules.channel(params.get("channel")), rules.optional_token(params.get("token"), fatal=False)
    )


def parse_ping(params: Mapping[str, Any]) -> PingRequest:
    return PingRequest()


CLIENT_REQUESTS: Mapping[str, Callable[[Mapping[str, Any]], ClientRequest]] = {
    "connect": parse_connect,
    "subscribe": parse_subscribe,
    "unsubscribe": parse_unsubscribe,
    "publish": parse_publish,
    "presence": parse_presence,
    "presence_stats": parse_presence_stats,
    "history": parse_history,
    "ping": parse_ping,
    "send": parse_send,
    "rpc": parse_rpc,
    "refresh": parse_refresh,
    "sub_refresh": parse_sub_refresh,
}
"""The parser of each client method; the keys are every method the protocol has."""


def parse_command(cmd_id: int, method: str, params: Mapping[str, Any]) -> Command:
    """The typed command of one decoded JSON command (``method`` is one of ``CLIENT_REQUESTS``
    or ``""`` for the pong); a refused request becomes ``Malformed``."""
    if not method:
        return PONG
    try:
        request = CLIENT_REQUESTS[method](params)
    except RequestError as error:
        request = Malformed(error)
    return Command(cmd_id, method, request)
