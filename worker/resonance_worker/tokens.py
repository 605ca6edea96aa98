"""Minting tokens (HS256), for development and tests. Verification lives in
``resonance_worker.domain.auth``."""

from __future__ import annotations

from typing import Any

import jwt


def mint_connection_token(
    secret: str,
    *,
    sub: str,
    now: float,
    ttl: float = 3600.0,
    info: Any = None,
    channels: list[str] | None = None,
    consent: list[str] | None = None,
) -> str:
    """An HS256 connection JWT for user ``sub`` valid for ``ttl`` seconds from ``now`` (``consent``:
    the kinds of data that may be stored, see ``domain.consent``)."""
    claims: dict[str, Any] = {"sub": sub, "iat": int(now), "exp": int(now + ttl)}
    if info is not None:
        claims["info"] = info
    if channels:
        claims["channels"] = channels
    if consent is not None:
        claims["consent"] = consent
    return jwt.encode(claims, secret, algorithm="HS256")


def mint_subscription_token(
    secret: str, *, sub: str, channel: str, now: float, ttl: float = 3600.0, info: Any = None
) -> str:
    """An HS256 subscription JWT letting user ``sub`` subscribe to ``channel``."""
    claims: dict[str, Any] = {"sub": sub, "channel": channel, "iat": int(now), "exp": int(now + ttl)}
    if info is not None:
        claims["info"] = info
    return jwt.encode(claims, secret, algorithm="HS256")
