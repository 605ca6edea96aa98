"""Token verification: algorithms, keys and time windows (no clock: `now` is given)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from resonance_worker.domain.auth import (
    InvalidTokenError,
    TokenExpiredError,
    TokenVerifier,
)

SECRET = "a-test-secret-that-is-long-enough-for-hs256"
NOW = 1_800_000_000.0


def _pem(key: Any) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def test_hs256_token_gives_user_info_channels_and_expiry() -> None:
    token = jwt.encode(
        {"sub": "alice", "exp": NOW + 60, "info": {"name": "A"}, "channels": ["chat:x"]}, SECRET, "HS256"
    )
    claims = TokenVerifier(hmac_secret=SECRET).verify_connect(token, NOW)
    assert claims.user == "alice"
    assert claims.expire_at == int(NOW + 60)
    assert claims.info == b'{"name":"A"}'
    assert claims.channels == ("chat:x",)


def test_token_without_exp_never_expires() -> None:
    token = jwt.encode({"sub": "bob"}, SECRET, "HS256")
    assert TokenVerifier(hmac_secret=SECRET).verify_connect(token, NOW).expire_at is None


def test_rs256_and_es256_with_public_keys(rsa_key: Any, ec_key: Any) -> None:
    verifier = TokenVerifier(rsa_public_key_pem=_pem(rsa_key), ec_public_key_pem=_pem(ec_key))
    assert verifier.configured
    assert verifier.verify_connect(jwt.encode({"sub": "r"}, rsa_key, "RS256"), NOW).user == "r"
    assert verifier.verify_connect(jwt.encode({"sub": "e"}, ec_key, "ES256"), NOW).user == "e"


def test_jwks_keys_are_chosen_by_kid(rsa_key: Any) -> None:
    numbers = rsa_key.public_key().public_numbers()

    def b64(n: int) -> str:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    verifier = TokenVerifier()
    assert not verifier.configured
    count = verifier.set_jwks(
        {
            "keys": [
                {
                    "kty": "RSA",
                    "kid": "k1",
                    "alg": "RS256",
                    "use": "sig",
                    "n": b64(numbers.n),
                    "e": b64(numbers.e),
                }
            ]
        }
    )
    assert count == 1
    token = jwt.encode({"sub": "j"}, rsa_key, "RS256", headers={"kid": "k1"})
    assert verifier.verify_connect(token, NOW).user == "j"
    # The key in the set is RS256; a token claiming another algorithm for it is refused.
    forged = jwt.encode({"sub": "j"}, SECRET, "HS256", headers={"kid": "k1"})
    with pytest.raises(InvalidTokenError):
        verifier.verify_connect(forged, NOW)


@pytest.mark.parametrize(
    "token",
    [
        jwt.encode({"sub": "x"}, None, "none"),
        jwt.encode({"sub": "x"}, "another-secret-that-is-long-enough-for-hs", "HS256"),
        "not.a.token",
        "garbage",
        jwt.encode({"sub": 5}, SECRET, "HS256"),
        jwt.encode({"sub": "x", "exp": "soon"}, SECRET, "HS256"),
        jwt.encode({"sub": "x", "channel": "chat:x"}, SECRET, "HS256"),
        jwt.encode({"sub": "x", "channels": "chat:x"}, SECRET, "HS256"),
    ],
    ids=[
        "alg-none",
        "wrong-key",
        "malformed",
        "garbage",
        "sub-not-string",
        "exp-not-number",
        "channel-claim",
        "channels-not-list",
    ],
)
def test_invalid_tokens(token: str) -> None:
    with pytest.raises(InvalidTokenError):
        TokenVerifier(hmac_secret=SECRET).verify_connect(token, NOW)


def test_rs256_token_without_rsa_key_is_invalid(rsa_key: Any) -> None:
    with pytest.raises(InvalidTokenError):
        TokenVerifier(hmac_secret=SECRET).verify_connect(jwt.encode({"sub": "r"}, rsa_key, "RS256"), NOW)


def test_expired_and_not_yet_valid_tokens_are_expired() -> None:
    verifier = TokenVerifier(hmac_secret=SECRET)
    with pytest.raises(TokenExpiredError):
        verifier.verify_connect(jwt.encode({"sub": "x", "exp": NOW - 1}, SECRET, "HS256"), NOW)
    with pytest.raises(TokenExpiredError):
        verifier.verify_connect(jwt.encode({"sub": "x", "nbf": NOW + 10}, SECRET, "HS256"), NOW)


def test_audience_and_issuer_when_configured() -> None:
    verifier = TokenVerifier(hmac_secret=SECRET, audience="app", issuer="idp")
    good = jwt.encode({"sub": "x", "aud": "app", "iss": "idp"}, SECRET, "HS256")
    assert verifier.verify_connect(good, NOW).user == "x"
    with pytest.raises(InvalidTokenError):
        verifier.verify_connect(jwt.encode({"sub": "x", "aud": "other", "iss": "idp"}, SECRET, "HS256"), NOW)


def test_subscription_token_needs_channel() -> None:
    verifier = TokenVerifier(hmac_secret=SECRET)
    claims = verifier.verify_subscribe(
        jwt.encode({"sub": "a", "channel": "$secret", "exp": NOW + 5, "info": [1]}, SECRET, "HS256"), NOW
    )
    assert (claims.user, claims.channel, claims.expire_at, claims.info) == (
        "a",
        "$secret",
        int(NOW + 5),
        b"[1]",
    )
    with pytest.raises(InvalidTokenError):
        verifier.verify_subscribe(jwt.encode({"sub": "a"}, SECRET, "HS256"), NOW)


def test_pem_of_the_wrong_kind_is_refused(rsa_key: Any, ec_key: Any) -> None:
    with pytest.raises(ValueError, match="RSA"):
        TokenVerifier(rsa_public_key_pem=_pem(ec_key))
    with pytest.raises(ValueError, match="EC"):
        TokenVerifier(ec_public_key_pem=_pem(rsa_key))


def test_a_verified_token_is_checked_once_and_still_expires_on_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from resonance_worker.domain import auth

    calls: list[str] = []
    decode, short = jwt.decode, auth._HmacShortPath.verify

    def counting_decode(token: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(token)
        return decode(token, *args, **kwargs)

    def counting_short(path: Any, token: str) -> Any:
        calls.append(token)
        return short(path, token)

    monkeypatch.setattr(jwt, "decode", counting_decode)
    monkeypatch.setattr(auth._HmacShortPath, "verify", counting_short)
    verifier = TokenVerifier(hmac_secret=SECRET)
    token = jwt.encode({"sub": "alice", "exp": NOW + 60}, SECRET, "HS256")
    assert verifier.verify_connect(token, NOW).user == "alice"
    assert verifier.verify_connect(token, NOW + 30).user == "alice"  # a reconnect with the same token
    assert len(calls) == 1
    with pytest.raises(TypeError):  # the remembered claims cannot be changed through one connection
        verifier.verify_connect(token, NOW).claims["sub"] = "mallory"  # type: ignore[index]
    with pytest.raises(TokenExpiredError):
        verifier.verify_connect(token, NOW + 60)
    with pytest.raises(InvalidTokenError):  # a remembered connection token is still no subscription token
        verifier.verify_subscribe(token, NOW)
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    with pytest.raises(InvalidTokenError):
        verifier.verify_connect(forged, NOW)


def test_remembered_tokens_are_bounded_and_forgotten_when_the_keys_change(
    rsa_key: Any, ec_key: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from resonance_worker.domain import auth

    monkeypatch.setattr(auth, "VERIFIED_CACHE_SIZE", 3)
    verifier = TokenVerifier(hmac_secret=SECRET)
    tokens = [jwt.encode({"sub": f"u{i}", "exp": NOW + 60 + i}, SECRET, "HS256") for i in range(5)]
    for token in tokens:
        verifier.verify_connect(token, NOW)
    assert len(verifier._verified) <= 3
    assert [verifier.verify_connect(t, NOW).user for t in tokens] == [f"u{i}" for i in range(5)]

    rsa_jwk = jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True)
    assert verifier.set_jwks({"keys": [{**rsa_jwk, "kid": "k1", "alg": "RS256"}]}) == 1
    signed = jwt.encode({"sub": "r"}, rsa_key, "RS256", headers={"kid": "k1"})
    assert verifier.verify_connect(signed, NOW).user == "r"
    ec_jwk = jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key(), as_dict=True)
    verifier.set_jwks({"keys": [{**ec_jwk, "kid": "k2", "alg": "ES256"}]})  # k1 rotated out
    with pytest.raises(InvalidTokenError):
        verifier.verify_connect(signed, NOW)


def test_the_least_recently_used_token_is_forgotten_first(monkeypatch: pytest.MonkeyPatch) -> None:
    from resonance_worker.domain import auth

    monkeypatch.setattr(auth, "VERIFIED_CACHE_SIZE", 2)
    verifier = TokenVerifier(hmac_secret=SECRET)
    first, second, third = (jwt.encode({"sub": u, "exp": NOW + 60}, SECRET, "HS256") for u in "abc")
    verifier.verify_connect(first, NOW)
    verifier.verify_connect(second, NOW)
    verifier.verify_connect(first, NOW + 1)  # a reconnect: `first` is the most recently used now
    verifier.verify_connect(third, NOW + 2)  # full: `second` goes
    digest = {t: hashlib.blake2b(t.encode(), digest_size=16).digest() for t in (first, second, third)}
    assert list(verifier._verified) == [digest[first], digest[third]]
    # An expired token is refused from the cache too, and forgotten then.
    expiring = jwt.encode({"sub": "d", "exp": NOW + 5}, SECRET, "HS256")
    verifier.verify_connect(expiring, NOW)
    with pytest.raises(TokenExpiredError):
        verifier.verify_connect(expiring, NOW + 5)
    assert digest[third] in verifier._verified and len(verifier._verified) == 1


# -- the HMAC short path against pyjwt (the reference) ---------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _skewed(segment: str) -> str:
    """``segment`` with the lowest bit of its last character flipped: where that bit is unused, the same
    bytes in a spelling that is not canonical (pyjwt refuses it), else other bytes."""
    return segment[:-1] + _ALPHABET[_ALPHABET.index(segment[-1]) ^ 1]


def _signed(header: bytes, payload: bytes, secret: str, alg: str = "HS256", skew: int = 0) -> str:
    head, body = _b64(header), _b64(payload)
    head, body = (_skewed(head) if skew == 1 else head), (_skewed(body) if skew == 2 else body)
    signing_input = f"{head}.{body}"
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    return f"{signing_input}.{_b64(hmac.new(secret.encode(), signing_input.encode(), digest).digest())}"


def _verdict(verifier: TokenVerifier, token: str) -> tuple[str, Any]:
    verifier._verified.clear()
    try:
        claims = verifier.verify_connect(token, NOW)
    except (InvalidTokenError, TokenExpiredError) as error:
        return type(error).__name__, str(error)
    return "ok", (
        claims.user,
        claims.expire_at,
        claims.info,
        claims.channels,
        claims.tenant,
        repr(dict(claims.claims)),
    )


def _both(token: str, **options: Any) -> tuple[tuple[str, Any], tuple[str, Any]]:
    short = TokenVerifier(hmac_secret=SECRET, **options)
    reference = TokenVerifier(hmac_secret=SECRET, **options)
    reference._short = None  # pyjwt alone
    return _verdict(short, token), _verdict(reference, token)


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
_claims = st.fixed_dictionaries(
    {},
    optional={
        "sub": st.text(max_size=6) | st.integers(0, 9),
        "jti": st.text(max_size=4) | st.none(),
        "exp": st.sampled_from([NOW - 1, NOW + 60, "soon", True]),
        "nbf": st.sampled_from([NOW - 1, NOW + 60]),
        "info": _json,
        "channels": st.lists(st.text(max_size=4), max_size=2),
        "tenant": st.text(max_size=3),
        "channel": st.just("chat:x"),
        "extra": _json,
        "big": st.integers(2**63, 2**70) | st.integers(-(2**70), -(2**63)),  # orjson would read a float
    },
)
_plain_claims = st.fixed_dictionaries(  # tokens the short path takes (when signed right)
    {"sub": st.text(max_size=6)},
    optional={
        "exp": st.just(NOW + 60),
        "info": _json,
        "big": st.integers(2**63, 2**70) | st.integers(-(2**70), -(2**63)),  # orjson would read a float
    },
)
_plain_headers = st.fixed_dictionaries(
    {"alg": st.sampled_from(["HS256", "HS384", "HS512"])}, optional={"typ": st.just("JWT")}
)
_headers = st.fixed_dictionaries(
    {"alg": st.sampled_from(["HS256", "HS384", "HS512", "none", "RS256", "hs256"])},
    optional={
        "typ": st.sampled_from(["JWT", 7]),
        "kid": st.sampled_from(["k1", 5]),
        "crit": st.just(["b64"]),
        "b64": st.booleans(),
        "x": _json,
    },
)


def _document(value: Any, style: int) -> bytes:
    """The JSON text of ``value`` in one of the spellings a token may carry."""
    text = json.dumps(value, allow_nan=True)
    return [text, text.replace(", ", ","), " " + text + "\n", "\ufeff" + text][style].encode()


def _mutate(token: str, how: int, where: int) -> str:
    """A bad spelling of ``token``: one character changed, padding, a segment too many or too few, ..."""
    at = where % len(token)
    if how == 1:
        return token[:at] + ("A" if token[at] != "A" else "B") + token[at + 1 :]
    if how == 2:  # the last character's unused bits set: a non-canonical signature (or garbage)
        return token[:-1] + ("B" if token[-1] != "B" else "C")
    if how == 3:
        return token + "=="
    if how == 4:
        return token + ".e30"
    if how == 5:
        return token.rsplit(".", 1)[0]
    if how == 6:
        return token[:at] + "!" + token[at + 1 :]
    if how == 7:
        return token[:at] + "é" + token[at + 1 :]
    return token


@settings(max_examples=400, deadline=None)
@given(
    header=_plain_headers | _headers,
    claims=_plain_claims | _claims | _json,
    spelling=st.tuples(st.integers(0, 3), st.integers(0, 3)),
    secret=st.sampled_from([SECRET, SECRET, SECRET + "-other"]),
    mutation=st.tuples(st.integers(0, 14), st.integers(0, 500)),  # over 7: left as signed
    skew=st.integers(0, 4),  # 1, 2: the header's or the payload's last character skewed, then signed
)
def test_the_short_path_gives_pyjwts_verdict_on_any_token(
    header: dict[str, Any],
    claims: Any,
    spelling: tuple[int, int],
    secret: str,
    mutation: tuple[int, int],
    skew: int,
) -> None:
    alg = header["alg"] if header["alg"] in ("HS256", "HS384", "HS512") else "HS256"
    token = _signed(_document(header, spelling[0]), _document(claims, spelling[1]), secret, alg, skew)
    token = _mutate(token, *mutation)
    short, reference = _both(token)
    assert short == reference


def test_the_short_path_takes_the_plain_tokens_and_leaves_the_rest_to_pyjwt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from resonance_worker.domain import auth

    decoded: list[str] = []
    decode = jwt.decode
    monkeypatch.setattr(jwt, "decode", lambda token, *a, **k: decoded.append(token) or decode(token, *a, **k))
    long_secret = SECRET * 2  # long enough for HS512 too: pyjwt warns about nothing
    verifier = TokenVerifier(hmac_secret=long_secret)
    plain = [
        jwt.encode({"sub": f"u{i}", "exp": NOW + 60}, long_secret, alg) for i, alg in enumerate(auth._HASHES)
    ]
    assert [verifier.verify_connect(t, NOW).user for t in plain] == ["u0", "u1", "u2"]
    assert decoded == []  # the short path took them
    verifier = TokenVerifier(hmac_secret=SECRET)  # 43 bytes: HS384 and HS512 are pyjwt's (and its warning)
    hs384 = jwt.encode({"sub": "h"}, SECRET, "HS384")
    with pytest.warns(jwt.warnings.InsecureKeyLengthWarning):
        assert verifier.verify_connect(hs384, NOW).user == "h"
    assert decoded == [hs384]
    decoded.clear()
    forged = _signed(b'{"alg":"HS256"}', b'{"sub":"mallory"}', SECRET + "-other")
    big = _signed(b'{"alg":"HS256"}', b'{"sub":"b","n":100000000000000000000}', SECRET)
    with pytest.raises(InvalidTokenError, match="bad signature"):
        verifier.verify_connect(forged, NOW)
    assert type(verifier.verify_connect(big, NOW).claims["n"]) is int  # as json reads it (orjson: a float)
    assert decoded == [forged]  # pyjwt's verdict
    # With an audience or issuer configured, or a secret pyjwt warns about, every token is pyjwt's.
    assert TokenVerifier(hmac_secret=SECRET, audience="a")._short is None
    assert TokenVerifier(hmac_secret=SECRET, issuer="i")._short is None
    assert TokenVerifier(hmac_secret="short")._short is None
    assert TokenVerifier(hmac_secret='{"kty": "oct"}')._short is None
