"""An identity provider's JWKS endpoint on loopback, for a real worker's ``RESONANCE_JWT_JWKS_URL``."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.harness.processes import free_port


def rsa_jwks(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    """A JWKS document holding ``key``'s public half as an RS256 key named ``kid``."""
    numbers = key.public_key().public_numbers()

    def b64(n: int) -> str:
        return base64.urlsafe_b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()

    return {"keys": [{"kty": "RSA", "kid": kid, "alg": "RS256", "n": b64(numbers.n), "e": b64(numbers.e)}]}


@contextlib.asynccontextmanager
async def serving_jwks(answer: Callable[[web.Request], Awaitable[web.Response]]) -> AsyncIterator[str]:
    """``answer`` serves ``GET /jwks.json`` on a free loopback port; yields the URL."""
    app = web.Application()
    app.router.add_get("/jwks.json", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/jwks.json"
    finally:
        await runner.cleanup()
