"""HTTP concerns shared by the worker's routes: JSON responses, the error envelope, the API key,
the request body, the client's address.

Every API route (the server API ``/api/<method>``, the graph's ``/api/graph.<query>``, ``/drain``)
answers the same way:

* success: ``200`` (or the route's own status) with a JSON body;
* refusal: ``{"error": {"code": <protocol code>, "message": <what to fix>}}`` with the status of
  :func:`response_for` — the one table from an error to its response.

A route checks the key with :func:`check_api_key`, reads its body with :func:`read_json_object`,
and turns any :class:`ApiError`, :class:`~resonance_worker.rpc.RpcError` or
:class:`~resonance_worker.errors.EngineError` it meets into a response with :func:`response_for`.
The endpoints a browser app reads answer CORS for the allowed origins (:func:`cors_middleware`).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Mapping
from typing import Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from pydantic import SecretStr

from resonance_worker.domain.codes import ErrorCode
from resonance_worker.domain.netpolicy import AddressPolicy
from resonance_worker.domain.origins import OriginPolicy
from resonance_worker.errors import EngineError, EngineOutOfMemoryError
from resonance_worker.rpc import RpcError


class ApiError(Exception):
    """An API call refused: the protocol ``code``, a ``message`` saying what to fix, the HTTP ``status``."""

    def __init__(self, code: ErrorCode, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


RPC_ERROR_STATUS: Mapping[ErrorCode, int] = {
    ErrorCode.NOT_AVAILABLE: 503,
    ErrorCode.METHOD_NOT_FOUND: 404,
}
"""The HTTP status of a living-core refusal (an ``RpcError``) answered over HTTP; 400 for the others."""


def json_response(payload: Mapping[str, Any], status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


def error_response(code: ErrorCode, message: str, status: int) -> web.Response:
    return json_response({"error": {"code": int(code), "message": message}}, status)


def response_for(error: ApiError | RpcError | EngineError) -> web.Response:
    """The response to an error met while answering an API call."""
    match error:
        case ApiError():
            return error_response(error.code, error.message, error.status)
        case RpcError():
            return error_response(error.code, error.message, RPC_ERROR_STATUS.get(error.code, 400))
        case EngineOutOfMemoryError():
            return error_response(
                ErrorCode.INTERNAL, "storage full: Redis refused the write (maxmemory)", 507
            )
        case EngineError():
            return error_response(ErrorCode.INTERNAL, "engine unavailable", 503)


def check_api_key(request: web.Request, key: SecretStr | None) -> None:
    """Let the call through only with the configured key (``Authorization: apikey <key>``, or
    ``X-API-Key``), compared in constant time. ``ApiError``: 403 when no key is configured (an empty
    one included: the API is off), 401 for a missing or wrong key."""
    expected = key.get_secret_value() if key is not None else ""
    if not expected:
        raise ApiError(ErrorCode.NOT_AVAILABLE, "server API disabled (no api_key)", 403)
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    given = value.strip() if scheme.lower() == "apikey" else request.headers.get("X-API-Key", "")
    if not (given and hmac.compare_digest(given.encode(), expected.encode())):
        raise ApiError(ErrorCode.UNAUTHORIZED, "unauthorized", 401)


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body (``{}`` when there is none); ``ApiError`` 400 otherwise."""
    try:
        body = await request.json() if request.can_read_body else {}
    except ValueError:
        raise ApiError(ErrorCode.BAD_REQUEST, "body must be JSON") from None
    if not isinstance(body, dict):
        raise ApiError(ErrorCode.BAD_REQUEST, "body must be a JSON object")
    return body


def client_ip(request: web.Request, policy: AddressPolicy) -> str:
    """The client's address: the TCP peer, or what a trusted proxy forwarded (see ``netpolicy``)."""
    peer = request.remote or ""
    forwarded = request.headers.get(policy.header) if policy.header else None
    return policy.client_address(peer, forwarded)


CORS_METHODS = "GET, POST, OPTIONS"
CORS_HEADERS = "Content-Type, Authorization"
CORS_MAX_AGE = "600"


def cors_middleware(policy: OriginPolicy, paths: frozenset[str]) -> Middleware:
    """CORS for the endpoints a browser app on an allowed origin reads (``paths``; see
    ``domain.origins``): a preflight (``OPTIONS`` with ``Access-Control-Request-Method``) is answered
    204 with what may be sent, or 403 for an origin not allowed; an answer to an allowed origin
    carries ``Access-Control-Allow-Origin``. Other paths and requests without ``Origin`` are left as
    they are."""

    @web.middleware
    def cors(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
        # Not a coroutine: a request it leaves alone (every WebSocket, for its whole life) holds no
        # frame of this middleware (docs/benchmarks.md, idle memory).
        origin = request.headers.get("Origin")
        if origin is None or request.path not in paths:
            return handler(request)
        return answer(request, handler, origin)

    async def answer(request: web.Request, handler: Handler, origin: str) -> web.StreamResponse:
        allowed = policy.admits(origin, request.host)
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            if not allowed:
                return json_response(
                    {"error": f"origin {origin[:200]!r} is not allowed (allowed_origins)"}, 403
                )
            return web.Response(
                status=204,
                headers={
                    "Access-Control-Allow-Origin": origin,
                    "Access-Control-Allow-Methods": CORS_METHODS,
                    "Access-Control-Allow-Headers": CORS_HEADERS,
                    "Access-Control-Max-Age": CORS_MAX_AGE,
                    "Vary": "Origin",
                },
            )
        response = await handler(request)
        if allowed:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
        return response

    return cors
