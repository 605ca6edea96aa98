"""Verifying connection and subscription JWTs, given key material and ``now``.

As in Centrifugo: a token that is malformed, unsigned (``alg: none``), signed
with an algorithm or key we do not hold, or carries wrong claims is *invalid*
(the connection is closed with 3500, no reconnect); a well-signed token whose
``exp`` passed or whose ``nbf`` is still ahead is *expired* (error 109, on
which the SDK fetches a new token and reconnects). Signature checking is
pyjwt's; time checks are ours, against the ``now`` passed in.

An HMAC-signed token with a plain header (``alg`` and ``typ`` only) under the
configured secret is checked by a short path first (:class:`_HmacShortPath`):
it *accepts* only what pyjwt accepts, with the same claims, and hands every
other token — a bad signature, an odd encoding, a ``kid``, ``crit`` or ``b64``
header, a non-string ``sub`` or ``jti``, a configured audience or issuer — to
pyjwt, whose verdict and error stand (both read JSON with ``json``).
pyjwt is the reference implementation; a test holds the two to the same
verdicts (``tests/worker/domain/test_auth.py``). It saves a fresh token's
pyjwt overhead (the key's preparation on every call, three segment checks,
two ``json`` parses): ≈ 90 of ≈ 110 µs (docs/benchmarks.md).

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

import base64
import hashlib
import hmac
import json
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, cast

import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.algorithms import get_default_algorithms

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
        # Audience and issuer checks are pyjwt's alone: with either configured every token goes to pyjwt.
        plain = self.audience is None and self.issuer is None
        self._short = _HmacShortPath.for_secret(self.hmac_secret) if plain else None

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
            short = self._short
            claims = short.verify(token) if short is not None else None
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


_SEGMENTS = re.compile(r"([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)")
_HASHES = {"HS256": "sha256", "HS384": "sha384", "HS512": "sha512"}


@dataclass(frozen=True, slots=True)
class _HmacShortPath:
    """The common case of :meth:`TokenVerifier._verify_signature` without pyjwt's per-call overhead: the
    claims of a token pyjwt would accept, or None (then pyjwt decides; see the module docstring)."""

    keys: Mapping[str, bytes]
    """alg -> the secret, for the HMAC algorithms pyjwt takes the secret for without a warning."""

    @staticmethod
    def for_secret(secret: str | None) -> _HmacShortPath | None:
        if not secret:
            return None
        algorithms = get_default_algorithms()
        keys: dict[str, bytes] = {}
        for alg in HMAC_ALGORITHMS:
            try:
                key = algorithms[alg].prepare_key(secret)  # refuses PEM, DER, SSH or JWK-looking secrets
            except jwt.PyJWTError:
                return None
            if not algorithms[alg].check_key_length(key):  # short keys: pyjwt's path (and its warning)
                keys[alg] = key
        return _HmacShortPath(keys) if keys else None

    def verify(self, token: str) -> dict[str, Any] | None:
        segments = _SEGMENTS.fullmatch(token)
        if segments is None:
            return None
        head, body, signature = segments.groups()
        if len(head) % 4 == 1 or len(body) % 4 == 1:
            return None
        try:  # pyjwt's own reader (``json``): orjson reads some numbers otherwise (big integers as floats)
            header = json.loads(_unbase64(head))
        except (ValueError, RecursionError):
            return None
        if type(header) is not dict or "kid" in header or "crit" in header or "b64" in header:
            return None
        alg = header.get("alg")
        key = self.keys.get(alg) if type(alg) is str else None
        if key is None:
            return None
        assert isinstance(alg, str)
        signing_input = token[: segments.end(2)].encode()
        expected = base64.urlsafe_b64encode(hmac.digest(key, signing_input, _HASHES[alg])).rstrip(b"=")
        if not hmac.compare_digest(expected, signature.encode()):
            return None  # pyjwt says why (a bad signature, or a signature segment it reads otherwise)
        try:
            claims = json.loads(_unbase64(body))
        except (ValueError, RecursionError):
            return None
        if type(claims) is not dict:
            return None
        if ("sub" in claims and type(claims["sub"]) is not str) or (
            "jti" in claims and type(claims["jti"]) is not str
        ):
            return None
        return cast(dict[str, Any], claims)


def _unbase64(segment: str) -> bytes:
    """The bytes of a base64url segment in pyjwt's canonical form, or ValueError."""
    decoded = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    if base64.urlsafe_b64encode(decoded).rstrip(b"=") != segment.encode():
        raise ValueError("not canonical")
    return decoded


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
