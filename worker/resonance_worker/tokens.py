"""Minting connection tokens (HS256). Verification lives with the protocol."""

from __future__ import annotations

from typing import Any

import jwt


def mint_connection_token(
    secret: str, *, sub: str, now: float, ttl: float = 3600.0, info: dict[str, Any] | None = None
) -> str:
    """An HS256 connection JWT for user ``sub`` valid for ``ttl`` seconds from ``now``."""
    claims: dict[str, Any] = {"sub": sub, "iat": int(now), "exp": int(now + ttl)}
    if info is not None:
        claims["info"] = info
    return jwt.encode(claims, secret, algorithm="HS256")
