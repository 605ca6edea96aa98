"""Retries of outside calls back off exponentially with jitter: the JWKS fetch of a real worker
against an identity provider that fails its first answers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.harness.jwks import rsa_jwks, serving_jwks
from tests.harness.worker import WorkerProcess
from tests.worker.transport.conftest import Clients

StartWorker = Callable[..., WorkerProcess]
FAILURES = 3


async def test_a_failed_jwks_fetch_is_retried_soon_with_jittered_backoff(
    start_worker: StartWorker, clients: Clients
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    document = rsa_jwks(key, "idp")
    requests = 0

    async def serve(request: web.Request) -> web.Response:
        nonlocal requests
        requests += 1
        if requests <= FAILURES:  # the identity provider is starting, or briefly down
            return web.json_response({"error": "unavailable"}, status=503)
        return web.json_response(document)

    async with serving_jwks(serve) as jwks_url:
        # The refresh period is an hour: only the retries can load the keys within this test.
        worker = await asyncio.to_thread(
            start_worker,
            {
                "RESONANCE_JWT_JWKS_URL": jwks_url,
                "RESONANCE_JWKS_REFRESH_SECONDS": "3600",
            },
        )
        for _ in range(300):
            if any(r.get("msg") == "JWKS loaded" for r in worker.log_records()):
                break
            await asyncio.sleep(0.1)
        records = worker.log_records()
        delays = [r["retry_in_s"] for r in records if r.get("msg") == "JWKS fetch failed"]
        assert len(delays) == FAILURES and requests == FAILURES + 1
        # Doubling from 1 s, each scaled by a jitter in [0.5, 1].
        for attempt, delay in enumerate(delays):
            assert 0.5 * 2**attempt <= delay <= 2**attempt, delays
        token = jwt.encode({"sub": "sso", "exp": int(time.time()) + 60}, key, "RS256", headers={"kid": "idp"})
        client, _ = await clients.connected(worker.ws_url, token)
        assert (await client.rpc("whoami", None)).data["user"] == "sso"
