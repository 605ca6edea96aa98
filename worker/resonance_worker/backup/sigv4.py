"""AWS Signature Version 4 for S3 requests: a pure function from a request to its headers.

No I/O and no clock: the caller passes the time. Enough of the S3 REST API for backups (PUT, GET, DELETE of
objects, ListObjectsV2, PUT of a bucket) against AWS S3 or any S3-compatible store (MinIO, Ceph RGW,
S3Proxy, versitygw). Path-style addressing (``http://host/bucket/key``), which every compatible store takes.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    region: str = "us-east-1"

    def __repr__(self) -> str:  # never the secret in a log line
        return f"Credentials(access_key={self.access_key!r}, region={self.region!r})"


def _encode(text: str, *, keep_slash: bool) -> str:
    return quote(text, safe="/~" if keep_slash else "~")


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def sign(
    method: str,
    url: str,
    credentials: Credentials,
    *,
    at: datetime,
    payload_sha256: str = EMPTY_SHA256,
    headers: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The headers to send with the request. ``url`` is exactly what goes on the wire: its path already
    percent-encoded once (:func:`object_url` builds it), sent without re-encoding."""
    parts = urlsplit(url)
    amz_date = at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    all_headers = {k.lower(): " ".join(v.strip().split()) for k, v in (headers or {}).items()}
    all_headers["host"] = parts.netloc
    all_headers["x-amz-date"] = amz_date
    all_headers["x-amz-content-sha256"] = payload_sha256
    signed = ";".join(sorted(all_headers))
    query_pairs = []
    if parts.query:
        for item in parts.query.split("&"):
            key, _, value = item.partition("=")
            query_pairs.append((key, value))  # already encoded on the wire (see object_url)
    canonical_query = "&".join(f"{k}={v}" for k, v in sorted(query_pairs))
    canonical = "\n".join(
        [
            method.upper(),
            parts.path or "/",
            canonical_query,
            "".join(f"{name}:{all_headers[name]}\n" for name in sorted(all_headers)),
            signed,
            payload_sha256,
        ]
    )
    scope = f"{day}/{credentials.region}/s3/aws4_request"
    to_sign = "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    signing_key = _hmac(("AWS4" + credentials.secret_key).encode(), day)
    for part in (credentials.region, "s3", "aws4_request"):
        signing_key = _hmac(signing_key, part)
    signature = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
    result = {k: v for k, v in (headers or {}).items()}
    result["x-amz-date"] = amz_date
    result["x-amz-content-sha256"] = payload_sha256
    result["Authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )
    return result


def object_url(endpoint: str, bucket: str, key: str = "", query: Mapping[str, str] | None = None) -> str:
    """``endpoint/bucket/key?query`` with every byte outside RFC 3986's unreserved set percent-encoded
    (``/`` kept in the key): the form S3 signs, to be sent as is."""
    url = (
        f"{endpoint.rstrip('/')}/{_encode(bucket, keep_slash=False)}/{_encode(key, keep_slash=True)}".rstrip(
            "/"
        )
    )
    if query:
        url += "?" + "&".join(
            f"{_encode(k, keep_slash=False)}={_encode(v, keep_slash=False)}" for k, v in query.items()
        )
    return url
