"""The server API for application back ends: ``POST /api/<method>`` with a
JSON body and ``Authorization: apikey <key>`` (Centrifugo's scheme; the
``X-API-Key`` header works too).

Methods: ``publish`` {channel, data, idempotency_key?, tags?}, ``broadcast``
{channels, data, idempotency_key?}, ``presence`` {channel}, ``presence_stats``
{channel}, ``history`` {channel, limit?, since?, reverse?}, ``disconnect``
{user, code?, reason?}, ``unsubscribe`` {user, channel}, ``user.export`` {user} and
``user.erase`` {user} (data rights: ``living.rights``); for the web console's admin view, about the
worker that answers: ``info`` {} (``{"nodes": [...]}``), ``channels`` {pattern?} and ``connections``
{user?} (at most ``LISTED`` of each, with the ``total``). Answers are
``{"result": {...}}``; bad input is HTTP 400 with ``{"error": {"code", "message"}}`` (the key
check and the envelope are ``transport.http``'s, shared with ``/drain`` and ``/api/graph.*``).
Bodies are parsed by the rule book (``resonance_worker.domain.requests.server``), with the
same field and namespace rules as the client commands; ``_METHODS`` maps each typed request
to what it does.
"""

from __future__ import annotations

import fnmatch
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from opentelemetry.trace import SpanKind

from resonance_worker import __version__
from resonance_worker.domain.channels import NamespaceOptions
from resonance_worker.domain.codes import ErrorCode
from resonance_worker.domain.protocol import api_publication_json, presence_json, presence_stats_json
from resonance_worker.domain.requests import rules
from resonance_worker.domain.requests.client import HistoryRequest, PresenceRequest, PresenceStatsRequest
from resonance_worker.domain.requests.rules import RequestError
from resonance_worker.domain.requests.server import (
    SERVER_REQUESTS,
    ApiBroadcastRequest,
    ApiChannelsRequest,
    ApiConnectionsRequest,
    ApiDisconnectRequest,
    ApiInfoRequest,
    ApiPublishRequest,
    ApiUnsubscribeRequest,
    UserEraseRequest,
    UserExportRequest,
    control_message,
)
from resonance_worker.engines.base import history_options
from resonance_worker.errors import EngineError
from resonance_worker.living.rights import DataRights
from resonance_worker.tracing import TRACER, context_from_headers
from resonance_worker.tracing import enabled as tracing_enabled
from resonance_worker.transport import audit
from resonance_worker.transport.http import (
    ApiError,
    check_api_key,
    json_response,
    read_json_object,
    response_for,
)
from resonance_worker.transport.keys import NODE, RIGHTS
from resonance_worker.transport.node import Node

log = logging.getLogger("resonance.worker.api")


def _options(node: Node, channel: str) -> NamespaceOptions:
    return rules.channel_options(node.rules, channel)


async def _publish_one(
    node: Node,
    channel: str,
    options: NamespaceOptions,
    data: bytes,
    key: str | None,
    tags: dict[str, str] | None,
) -> dict[str, Any]:
    result = await node.engine.publish(
        channel,
        data,
        tags=tags,
        history=history_options(options),
        idempotency_key=key,
        idempotency_ttl_seconds=node.settings.idempotency_ttl_seconds,
    )
    out: dict[str, Any] = {"offset": result.position.offset, "epoch": result.position.epoch}
    if result.duplicate:
        out["duplicate"] = True
    return out


async def _publish(node: Node, request: ApiPublishRequest) -> dict[str, Any]:
    options = _options(node, request.channel)
    return await _publish_one(
        node, request.channel, options, request.data, request.idempotency_key, request.tags
    )


async def _broadcast(node: Node, request: ApiBroadcastRequest) -> dict[str, Any]:
    # Every channel is checked before anything is published; each gets its own idempotency key.
    targets = [(channel, _options(node, channel)) for channel in request.channels]
    key = request.idempotency_key
    responses = []
    for channel, options in targets:
        channel_key = None if key is None else f"{key}:{channel}"
        responses.append(await _publish_one(node, channel, options, request.data, channel_key, request.tags))
    return {"responses": responses}


async def _presence(node: Node, request: PresenceRequest) -> dict[str, Any]:
    rules.require_presence(_options(node, request.channel))
    return presence_json(await node.read_presence(request.channel))


async def _presence_stats(node: Node, request: PresenceStatsRequest) -> dict[str, Any]:
    rules.require_presence(_options(node, request.channel))
    return presence_stats_json(await node.read_presence_stats(request.channel))


async def _history(node: Node, request: HistoryRequest) -> dict[str, Any]:
    options = _options(node, request.channel)
    rules.require_history(options)
    limit = rules.capped_limit(request.limit, node.settings.limits.history_max_limit)
    result = await node.read_history(request.channel, options, request.since, limit, request.reverse)
    return {
        "publications": [api_publication_json(p) for p in result.publications],
        "offset": result.offset,
        "epoch": result.epoch,
    }


async def _disconnect(node: Node, request: ApiDisconnectRequest) -> dict[str, Any]:
    await node.engine.publish_control(control_message(request))
    return {}


async def _unsubscribe(node: Node, request: ApiUnsubscribeRequest) -> dict[str, Any]:
    _options(node, request.channel)
    await node.engine.publish_control(control_message(request))
    return {}


LISTED = 1000
"""Most channels or connections one ``channels`` or ``connections`` reply lists (``total`` counts all)."""


async def _info(node: Node, request: ApiInfoRequest) -> dict[str, Any]:
    subs = node.local_subs
    return {
        "nodes": [
            {
                "name": node.settings.worker_name,
                "version": __version__,
                "uptime": int(time.time() - node.started_at),
                "num_clients": len(node.connections),
                "num_users": len(node.by_user),
                "num_subs": sum(len(clients) for clients in subs.values()),
                "num_channels": len(subs),
            }
        ]
    }


async def _channels(node: Node, request: ApiChannelsRequest) -> dict[str, Any]:
    names = sorted(
        name
        for name in node.local_subs
        if request.pattern is None or fnmatch.fnmatchcase(name, request.pattern)
    )
    listed = {name: {"num_clients": len(node.local_subs[name])} for name in names[:LISTED]}
    return {"channels": listed, "total": len(names), "node": node.settings.worker_name}


async def _connections(node: Node, request: ApiConnectionsRequest) -> dict[str, Any]:
    conns = (
        list(node.connections.values()) if request.user is None else list(node.by_user.get(request.user, ()))
    )
    conns.sort(key=lambda conn: conn.client_id)
    name = node.settings.worker_name
    listed = {
        conn.client_id: {"user": conn.session.user, "node": name, "channels": sorted(conn.session.channels)}
        for conn in conns[:LISTED]
    }
    return {"connections": listed, "total": len(conns), "node": name}


async def _user_export(rights: DataRights, node: Node, request: UserExportRequest) -> dict[str, Any]:
    return await rights.export(request.user)


async def _user_erase(rights: DataRights, node: Node, request: UserEraseRequest) -> dict[str, Any]:
    removed = await rights.erase(request.user)
    # Every worker drops the person's connections (and, 300 s later, what it holds of them in memory).
    await node.engine.publish_control(
        control_message(ApiDisconnectRequest(request.user, reason="data erased"))
    )
    return {"removed": removed}


_DATA_METHODS: dict[type, Callable[[DataRights, Node, Any], Awaitable[dict[str, Any]]]] = {
    UserExportRequest: _user_export,
    UserEraseRequest: _user_erase,
}
"""The data-rights methods (docs/data-rights.md): they reach every store, not only the engine."""

_METHODS: dict[type, Callable[[Node, Any], Awaitable[dict[str, Any]]]] = {
    ApiPublishRequest: _publish,
    ApiBroadcastRequest: _broadcast,
    PresenceRequest: _presence,
    PresenceStatsRequest: _presence_stats,
    HistoryRequest: _history,
    ApiDisconnectRequest: _disconnect,
    ApiUnsubscribeRequest: _unsubscribe,
    ApiInfoRequest: _info,
    ApiChannelsRequest: _channels,
    ApiConnectionsRequest: _connections,
}
"""What each server API request does (its body is parsed by ``SERVER_REQUESTS``)."""


async def _call(
    node: Node, method: str, body: dict[str, Any], rights: DataRights | None = None
) -> dict[str, Any]:
    parse = SERVER_REQUESTS.get(method)
    if parse is None:
        raise ApiError(ErrorCode.METHOD_NOT_FOUND, f"unknown method {method!r}", status=404)
    try:
        request = parse(body)
        data_method = _DATA_METHODS.get(type(request))
        if data_method is not None:
            if rights is None:
                raise ApiError(ErrorCode.NOT_AVAILABLE, f"{method}: data rights are not served here", 503)
            return await data_method(rights, node, request)
        return await _METHODS[type(request)](node, request)
    except RequestError as exc:
        raise ApiError(exc.code, exc.message) from None


async def handle(request: web.Request) -> web.Response:
    """Answer one server-API call and write its audit record; traced, the call is a span, a child
    of the caller's ``traceparent`` header when it sent one."""
    if tracing_enabled():
        method = request.match_info["method"]
        with TRACER.start_as_current_span(
            f"api {method}",
            context=context_from_headers(request.headers),
            kind=SpanKind.SERVER,
            attributes={"rpc.method": method},
        ) as span:
            response, body = await _answer(request)
            span.set_attribute("http.response.status_code", response.status)
    else:
        response, body = await _answer(request)
    audit.record(request, f"api.{request.match_info['method']}", response.status, body)
    return response


async def _answer(request: web.Request) -> tuple[web.Response, Any]:
    node = request.app[NODE]
    method = request.match_info["method"]
    body: dict[str, Any] | None = None
    try:
        check_api_key(request, node.settings.api_key)
        body = await read_json_object(request)
        result = await _call(request.app[NODE], method, body, request.app[RIGHTS])
    except ApiError as exc:
        return response_for(exc), body
    except EngineError as exc:
        log.error("server API call failed", extra={"method": method, "error": str(exc)})
        return response_for(exc), body
    return json_response({"result": result}), body
