"""Verifying connection and subscription JWTs, given key material and ``now``.

As in Centrifugo: a token that is malformed, unsigned (``alg: none``), signed
with an algorithm or key we do not hold, or carries wrong claims is *invalid*
(the connection is closed with 3500, no reconnect); a well-signed token whose
``exp`` passed or whose ``nbf`` is still ahead is *expired* (error 109, on
which the SDK fetches a new token and reconnects). Signature checking is
pyjwt's; time checks are ours, against the ``now`` passed in.

A token whose signature and claims were verified once is remembered by a
hash of its text (a bounded least-recently-used cache, emptied when the keys
change): a reconnecting client presents the token it already holds, so a
reconnect storm checks each signature once. The time checks still run on
every use, so a remembered token expires exactly as a fresh one would (and is
forgotten then). Revocation is by key: a key that leaves the JWKS takes its
tokens with it (``set_jwks``); the worker keeps no per-token or per-user deny
list (neither does Centrifugo's open-source server), so a user the server API
disconnects may come back with a token that is still valid, cached or not.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, cast

import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from resonance_worker.domain.consent import ConsentError, DataKind, parse_claim

HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
RSA_ALGORITHMS = ("RS256", "RS384", "RS512")
EC_ALGORITHMS = ("ES256", "ES384", "ES512")
# Verified tokens remembered per verifier (16-byte digest -> claims dict, ≈ 0.4 KB each): ≈ 13 MB at the
# bound, which is above the connections one worker process holds (docs/capacity.md).
VERIFIED_CACHE_SIZE = 32_768


class TokenError(Exception):
    """Base of token verification failures. The message never contains the token."""


class InvalidTokenError(TokenError):
    """Cannot be trusted: bad format, signature, algorithm or claims."""


class TokenExpiredError(TokenError):
    """Trusted but outside its validity window (``exp`` passed or ``nbf`` ahead)."""


@dataclass(frozen=True, slots=True)
class ConnectClaims:
    """What a connection token grants."""

    user: str
    expire_at: int | None  # unix seconds; None: never expires
    info: bytes | None  # raw JSON
    channels: tuple[str, ...] = ()  # server-side subscriptions
    tenant: str = ""  # see resonance_worker.domain.tenancy
    claims: Mapping[str, Any] = field(default_factory=dict)
    """Every claim of the token (feature-flag targeting reads them)."""
    consent: frozenset[DataKind] | None = None  # the consent claim; None: absent (domain.consent)


@dataclass(frozen=True, slots=True)
class SubscribeClaims:
    """What a subscription token grants (for one user and one channel)."""

    user: str
    channel: str
    expire_at: int | None
    info: bytes | None


@dataclass
class TokenVerifier:
    """Verifies tokens with the configured keys. ``jwks`` (kid -> key) can be
    replaced at run time as the shell refetches a JWKS URL."""

    hmac_secret: str | None = None
    rsa_public_key_pem: str | None = None
    ec_public_key_pem: str | None = None
    audience: str | None = None
    issuer: str | None = None
    jwks: Mapping[str, jwt.PyJWK] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rsa_key: Any = None
        self._ec_key: Any = None
        self._verified: OrderedDict[bytes, dict[str, Any]] = OrderedDict()
        if self.rsa_public_key_pem:
            key = load_pem_public_key(self.rsa_public_key_pem.encode())
            if not isinstance(key, rsa.RSAPublicKey):
                raise ValueError("the RSA public key PEM does not hold an RSA key")
            self._rsa_key = key
        if self.ec_public_key_pem:
            key = load_pem_public_key(self.ec_public_key_pem.encode())
            if not isinstance(key, ec.EllipticCurvePublicKey):
                raise ValueError("the ECDSA public key PEM does not hold an EC key")
            self._ec_key = key

    def set_jwks(self, jwks_document: Mapping[str, Any]) -> int:
        """Replace the key set from a JWKS document; return how many keys were usable."""
        key_set = jwt.PyJWKSet.from_dict(dict(jwks_document))
        self.jwks = {key.key_id: key for key in key_set.keys if key.key_id}
        self._verified.clear()  # a key that left the set must not keep its tokens valid
        return len(self.jwks)

    @property
    def configured(self) -> bool:
        return bool(self.hmac_secret or self._rsa_key or self._ec_key or self.jwks)

    def _key_for(self, header: Mapping[str, Any]) -> tuple[Any, str]:
        alg = header.get("alg")
        if not isinstance(alg, str) or alg.lower() == "none":
            raise InvalidTokenError("unsigned token")
        kid = header.get("kid")
        if isinstance(kid, str) and kid in self.jwks:
            jwk = self.jwks[kid]
            if jwk.algorithm_name != alg:
                raise InvalidTokenError("algorithm does not match the key")
            return jwk.key, alg
        if alg in HMAC_ALGORITHMS and self.hmac_secret:
            return self.hmac_secret, alg
        if alg in RSA_ALGORITHMS and self._rsa_key is not None:
            return self._rsa_key, alg
        if alg in EC_ALGORITHMS and self._ec_key is not None:
            return self._ec_key, alg
        raise InvalidTokenError(f"no key for algorithm {alg}")

    def _decode(self, token: str, now: float) -> dict[str, Any]:
        digest = hashlib.blake2b(token.encode(), digest_size=16).digest()
        verified = self._verified
        claims = verified.get(digest)
        fresh = claims is None
        if claims is None:
            claims = self._verify_signature(token)
        else:
            verified.move_to_end(digest)  # the most recently used now
        exp = _number_claim(claims, "exp")
        nbf = _number_claim(claims, "nbf")
        if exp is not None and now >= exp:
            verified.pop(digest, None)
            raise TokenExpiredError("token expired")
        if nbf is not None and now < nbf:
            raise TokenExpiredError("token not yet valid")
        if fresh:
            self._remember(digest, claims)
        return claims

    def _remember(self, digest: bytes, claims: dict[str, Any]) -> None:
        """Keep ``claims`` for their token's next use; when full, forget the least recently used token
        (in constant time: an expired one still held is refused by the time checks, and forgotten then)."""
        verified = self._verified
        while len(verified) >= VERIFIED_CACHE_SIZE:
            verified.popitem(last=False)
        verified[digest] = claims

    def _verify_signature(self, token: str) -> dict[str, Any]:
        """The signature, algorithm, audience and issuer checks (pyjwt's); not the time window."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidTokenError("malformed token") from None
        key, alg = self._key_for(header)
        options: dict[str, Any] = {
            "verify_exp": False,  # checked below against `now`
            "verify_nbf": False,
            "verify_iat": False,
            "verify_aud": self.audience is not None,
            "verify_iss": self.issuer is not None,
        }
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                options=cast(Any, options),
                audience=self.audience,
                issuer=self.issuer,
            )
        except jwt.InvalidSignatureError:
            raise InvalidTokenError("bad signature") from None
        except jwt.PyJWTError as exc:
            raise InvalidTokenError(type(exc).__name__) from None
        return claims

    def verify_connect(self, token: str, now: float) -> ConnectClaims:
        claims = self._decode(token, now)
        if "channel" in claims:
            raise InvalidTokenError("a connection token cannot carry a channel claim")
        user = _string_claim(claims, "sub")
        channels = claims.get("channels", [])
        if not isinstance(channels, list) or not all(isinstance(c, str) and c for c in channels):
            raise InvalidTokenError("channels must be a list of channel names")
        return ConnectClaims(
            user=user,
            expire_at=_expire_at(claims),
            info=_info(claims),
            channels=tuple(channels),
            tenant=_string_claim(claims, "tenant"),
            claims=MappingProxyType(claims),  # read-only: one dict serves every use of a remembered token
            consent=_consent(claims),
        )

    def verify_subscribe(self, token: str, now: float) -> SubscribeClaims:
        claims = self._decode(token, now)
        channel = _string_claim(claims, "channel")
        if not channel:
            raise InvalidTokenError("a subscription token needs a channel claim")
        return SubscribeClaims(
            user=_string_claim(claims, "sub"),
            channel=channel,
            expire_at=_expire_at(claims),
            info=_info(claims),
        )


def _number_claim(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise InvalidTokenError(f"{name} must be a number")
    return float(value)


def _string_claim(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name, "")
    if not isinstance(value, str):
        raise InvalidTokenError(f"{name} must be a string")
    return value


def _expire_at(claims: Mapping[str, Any]) -> int | None:
    exp = _number_claim(claims, "exp")
    return None if exp is None else int(exp)


def _consent(claims: Mapping[str, Any]) -> frozenset[DataKind] | None:
    try:
        return parse_claim(claims.get("consent"))
    except ConsentError as exc:
        raise InvalidTokenError(str(exc)) from None


def _info(claims: Mapping[str, Any]) -> bytes | None:
    info = claims.get("info")
    return None if info is None else orjson.dumps(info)
