"""Remembered tokens on a real worker: a reconnect storm presents tokens the worker verified before
(its cache of verified tokens answers them), and still a token whose key left the JWKS is refused
(3500) and a token past its ``exp`` is refused (109) - the cache changes the cost, not the answer."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.harness.jwks import rsa_jwks, serving_jwks
from tests.harness.worker import WorkerProcess

StartWorker = Callable[..., WorkerProcess]
STORM = 24


async def _connect(http: aiohttp.ClientSession, url: str, token: str) -> tuple[str, Any]:
    """("ok", client id) | ("error", code) | ("closed", close code) for one connect command."""
    async with http.ws_connect(url) as ws:
        await ws.send_str(json.dumps({"id": 1, "connect": {"token": token}}))
        message = await ws.receive(timeout=10)
        if message.type is not aiohttp.WSMsgType.TEXT:
            return "closed", ws.close_code
        reply = json.loads(message.data.split("\n")[0])
        if "error" in reply:
            return "error", reply["error"]["code"]
        return "ok", reply["connect"]["client"]


async def _storm(http: aiohttp.ClientSession, url: str, tokens: list[str]) -> list[tuple[str, Any]]:
    return list(await asyncio.gather(*(_connect(http, url, t) for t in tokens)))


async def _wait_for_loads(worker: WorkerProcess, count: int) -> None:
    for _ in range(200):
        if sum(r.get("msg") == "JWKS loaded" for r in worker.log_records()) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the worker did not load the JWKS {count} times")


async def test_a_reconnect_storm_with_remembered_tokens_still_refuses_revoked_and_expired_ones(
    start_worker: StartWorker,
) -> None:
    old_key, new_key = (rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2))
    served = {"document": rsa_jwks(old_key, "old")}

    async def serve(request: web.Request) -> web.Response:
        return web.json_response(served["document"])

    async with serving_jwks(serve) as jwks_url:
        worker = await asyncio.to_thread(
            start_worker,
            {
                "RESONANCE_JWT_JWKS_URL": jwks_url,
                "RESONANCE_JWKS_REFRESH_SECONDS": "0.2",
            },
        )
        await _wait_for_loads(worker, 1)
        now = time.time()
        short = worker.token("short-lived", ttl=8)  # outlives the two storms and the key rotation
        signed_by_old = jwt.encode(
            {"sub": "sso", "exp": int(now) + 600}, old_key, "RS256", headers={"kid": "old"}
        )
        others = [worker.token(f"user{i}") for i in range(STORM - 2)]
        tokens = [short, signed_by_old, *others]
        async with aiohttp.ClientSession() as http:
            # Everyone connects, leaves and comes back at once with the token it holds: the storm.
            first = await _storm(http, worker.ws_url, tokens)
            again = await _storm(http, worker.ws_url, tokens)
            assert [outcome for outcome, _ in first] == [outcome for outcome, _ in again] == ["ok"] * STORM

            # The key that signed a remembered token leaves the JWKS: the token is refused at once.
            loads = sum(r.get("msg") == "JWKS loaded" for r in worker.log_records())
            served["document"] = rsa_jwks(new_key, "new")
            await _wait_for_loads(worker, loads + 1)
            assert await _connect(http, worker.ws_url, signed_by_old) == ("closed", 3500)
            signed_by_new = jwt.encode(
                {"sub": "sso", "exp": int(now) + 600}, new_key, "RS256", headers={"kid": "new"}
            )
            assert (await _connect(http, worker.ws_url, signed_by_new))[0] == "ok"

            # The short-lived token, remembered since the first storm, expires on time.
            await asyncio.sleep(
                max(0.0, jwt.decode(short, options={"verify_signature": False})["exp"] - time.time())
            )
            storm = await _storm(http, worker.ws_url, [short, *others])
            assert storm[0] == ("error", 109)
            assert [outcome for outcome, _ in storm[1:]] == ["ok"] * (STORM - 2)
