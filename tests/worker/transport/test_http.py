"""The HTTP helpers every API route shares: the key check, the JSON body, the error table."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiohttp.test_utils import make_mocked_request
from pydantic import SecretStr
from resonance_worker.domain.codes import ErrorCode
from resonance_worker.errors import EngineError, GraphError
from resonance_worker.rpc import RpcError
from resonance_worker.transport.http import ApiError, check_api_key, response_for

KEY = SecretStr("s3cret")


def refusal(headers: dict[str, str], key: SecretStr | None = KEY) -> tuple[int, int] | None:
    try:
        check_api_key(make_mocked_request("POST", "/api/publish", headers=headers), key)
    except ApiError as exc:
        return exc.status, int(exc.code)
    return None


def test_the_key_is_required_and_compared() -> None:
    assert refusal({"Authorization": "apikey s3cret"}) is None
    assert refusal({"Authorization": "ApiKey  s3cret "}) is None
    assert refusal({"X-API-Key": "s3cret"}) is None
    assert refusal({}) == (401, 101)
    assert refusal({"Authorization": "apikey wrong"}) == (401, 101)
    assert refusal({"Authorization": "Bearer s3cret"}) == (401, 101)
    assert refusal({"X-API-Key": ""}) == (401, 101)


@pytest.mark.parametrize("key", [None, SecretStr("")])
def test_without_a_configured_key_the_api_is_off_even_with_an_empty_key_given(key: SecretStr | None) -> None:
    assert refusal({"Authorization": "apikey "}, key) == (403, 108)
    assert refusal({"X-API-Key": ""}, key) == (403, 108)


def body(response: Any) -> Any:
    return orjson.loads(response.body)


@pytest.mark.parametrize(
    ("error", "status", "code", "message"),
    [
        (ApiError(ErrorCode.UNKNOWN_CHANNEL, "unknown namespace"), 400, 102, "unknown namespace"),
        (ApiError(ErrorCode.METHOD_NOT_FOUND, "unknown method", 404), 404, 104, "unknown method"),
        (RpcError(ErrorCode.BAD_REQUEST, "at: must be a number"), 400, 107, "at: must be a number"),
        (RpcError(ErrorCode.NOT_AVAILABLE, "circuit open"), 503, 108, "circuit open"),
        (EngineError("redis down"), 503, 100, "engine unavailable"),
        (GraphError("neo4j down"), 503, 100, "engine unavailable"),
    ],
)
def test_one_table_turns_errors_into_responses(
    error: ApiError | RpcError | EngineError, status: int, code: int, message: str
) -> None:
    response = response_for(error)
    assert response.status == status and response.content_type == "application/json"
    assert body(response) == {"error": {"code": code, "message": message}}
