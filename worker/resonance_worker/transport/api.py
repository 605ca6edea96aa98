"""The server API for application back ends: ``POST /api/<method>`` with a
JSON body and ``Authorization: apikey <key>`` (Centrifugo's scheme; the
``X-API-Key`` header works too).

Methods: ``publish`` {channel, data, idempotency_key?, tags?}, ``broadcast``
{channels, data, idempotency_key?}, ``presence`` {channel}, ``presence_stats``
{channel}, ``history`` {channel, limit?, since?, reverse?}, ``disconnect``
{user, code?, reason?}, ``unsubscribe`` {user, channel}. Answers are
``{"result": {...}}``; bad input is HTTP 400 with ``{"error": {"code", "message"}}`` (the key
check and the envelope are ``transport.http``'s, shared with ``/drain`` and ``/api/graph.*``).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from aiohttp import web

from resonance_worker.domain.channels import NamespaceOptions
from resonance_worker.domain.codes import ErrorCode
from resonance_worker.domain.protocol import client_info_json, publication_json
from resonance_worker.engines.base import StreamPosition, history_options
from resonance_worker.errors import EngineError
from resonance_worker.transport import audit
from resonance_worker.transport.http import (
    ApiError,
    check_api_key,
    json_response,
    read_json_object,
    response_for,
)
from resonance_worker.transport.keys import NODE
from resonance_worker.transport.node import Node

log = logging.getLogger("resonance.worker.api")


def _channel(node: Node, body: dict[str, Any], name: str = "channel") -> tuple[str, NamespaceOptions]:
    channel = body.get(name)
    if not isinstance(channel, str) or not node.rules.valid_name(channel):
        raise ApiError(ErrorCode.BAD_REQUEST, f"{name} must be a channel name")
    options = node.rules.options(channel)
    if options is None:
        raise ApiError(ErrorCode.UNKNOWN_CHANNEL, f"unknown namespace of channel {channel!r}")
    return channel, options


async def _publish(
    node: Node, channel: str, options: NamespaceOptions, body: dict[str, Any]
) -> dict[str, Any]:
    if "data" not in body:
        raise ApiError(ErrorCode.BAD_REQUEST, "data is required")
    key = body.get("idempotency_key")
    tags = body.get("tags")
    if key is not None and not isinstance(key, str):
        raise ApiError(ErrorCode.BAD_REQUEST, "idempotency_key must be a string")
    if tags is not None and (
        not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values())
    ):
        raise ApiError(ErrorCode.BAD_REQUEST, "tags must map strings to strings")
    result = await node.engine.publish(
        channel,
        orjson.dumps(body["data"]),
        tags=tags,
        history=history_options(options),
        idempotency_key=key,
        idempotency_ttl_seconds=node.settings.idempotency_ttl_seconds,
    )
    out: dict[str, Any] = {"offset": result.position.offset, "epoch": result.position.epoch}
    if result.duplicate:
        out["duplicate"] = True
    return out


async def _call(node: Node, method: str, body: dict[str, Any]) -> dict[str, Any]:
    if method == "publish":
        channel, options = _channel(node, body)
        return await _publish(node, channel, options, body)
    if method == "broadcast":
        channels = body.get("channels")
        if not isinstance(channels, list) or not channels:
            raise ApiError(ErrorCode.BAD_REQUEST, "channels must be a non-empty list")
        responses = []
        for index, _ in enumerate(channels):
            channel, options = _channel(node, {"channel": channels[index]})
            per_channel = dict(body)
            if isinstance(body.get("idempotency_key"), str):
                per_channel["idempotency_key"] = f"{body['idempotency_key']}:{channel}"
            responses.append(await _publish(node, channel, options, per_channel))
        return {"responses": responses}
    if method == "presence":
        channel, options = _channel(node, body)
        if not options.presence:
            raise ApiError(ErrorCode.NOT_AVAILABLE, "presence is off in this namespace")
        presence = await node.engine.presence(channel)
        return {"presence": {k: client_info_json(v) for k, v in presence.items()}}
    if method == "presence_stats":
        channel, options = _channel(node, body)
        if not options.presence:
            raise ApiError(ErrorCode.NOT_AVAILABLE, "presence is off in this namespace")
        clients, users = await node.engine.presence_stats(channel)
        return {"num_clients": clients, "num_users": users}
    if method == "history":
        channel, options = _channel(node, body)
        if not options.has_history:
            raise ApiError(ErrorCode.NOT_AVAILABLE, "history is off in this namespace")
        limit = body.get("limit", 0)
        reverse = body.get("reverse", False)
        since = body.get("since")
        if not isinstance(limit, int) or not isinstance(reverse, bool):
            raise ApiError(ErrorCode.BAD_REQUEST, "limit must be an integer and reverse a boolean")
        position = None
        if since is not None:
            if not isinstance(since, dict) or not isinstance(since.get("offset", 0), int):
                raise ApiError(ErrorCode.BAD_REQUEST, "since must be {offset, epoch}")
            position = StreamPosition(int(since.get("offset", 0)), str(since.get("epoch", "")))
        cap = node.settings.limits.history_max_limit
        if cap and (limit < 0 or limit > cap):
            limit = cap
        pubs, top = await node.engine.history(
            channel,
            since=position,
            limit=limit,
            reverse=reverse,
            meta_ttl_seconds=options.history_meta_ttl_seconds,
        )
        return {"publications": [publication_json(p) for p in pubs], "offset": top.offset, "epoch": top.epoch}
    if method in ("disconnect", "unsubscribe"):
        user = body.get("user")
        if not isinstance(user, str) or not user:
            raise ApiError(ErrorCode.BAD_REQUEST, "user must be a non-empty string")
        command: dict[str, Any] = {"op": method, "user": user}
        if method == "disconnect":
            code = body.get("code", 3503)
            if not isinstance(code, int) or not 3000 <= code <= 4999:
                raise ApiError(ErrorCode.BAD_REQUEST, "code must be in 3000..4999")
            command["code"] = code
            command["reason"] = str(body.get("reason", "force disconnect"))
        else:
            command["channel"], _ = _channel(node, body)
        await node.engine.publish_control(orjson.dumps(command))
        return {}
    raise ApiError(ErrorCode.METHOD_NOT_FOUND, f"unknown method {method!r}", status=404)


async def handle(request: web.Request) -> web.Response:
    """Answer one server-API call and write its audit record."""
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
        result = await _call(node, method, body)
    except ApiError as exc:
        return response_for(exc), body
    except EngineError as exc:
        log.error("server API call failed", extra={"method": method, "error": str(exc)})
        return response_for(exc), body
    return json_response({"result": result}), body
