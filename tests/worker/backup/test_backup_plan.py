"""Backups, the pure parts: AWS Signature V4 (AWS's published example), ids, manifests, retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from resonance_worker.backup.plan import (
    BackupError,
    FileEntry,
    Manifest,
    backup_id,
    parse_backup_id,
    parse_period,
    to_remove,
)
from resonance_worker.backup.sigv4 import Credentials, object_url, sign


def test_sigv4_reproduces_the_aws_s3_example_signature() -> None:
    # docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html, "GET Object".
    credentials = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    url = "https://examplebucket.s3.amazonaws.com/test.txt"
    headers = sign(
        "GET",
        url,
        credentials,
        at=datetime(2013, 5, 24, tzinfo=UTC),
        payload_sha256="e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        headers={"Range": "bytes=0-9"},
    )
    assert headers["Authorization"].endswith(
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )
    assert "wJalr" not in repr(credentials)


def test_object_urls_are_encoded_once() -> None:
    assert object_url("http://s3:9000/", "b", "a b/c+d", {"prefix": "a b/"}) == (
        "http://s3:9000/b/a%20b/c%2Bd?prefix=a%20b%2F"
    )


def test_ids_periods_and_manifests() -> None:
    at = datetime(2026, 12, 5, 23, 0, 7, tzinfo=UTC)
    assert backup_id(at) == "20261205T230007Z" and parse_backup_id("20261205T230007Z") == at
    assert parse_backup_id("not-an-id") is None
    assert parse_period("7d") == timedelta(days=7) and parse_period("12h") == timedelta(hours=12)
    for bad in ("7", "0d", "1y", "-1d"):
        with pytest.raises(BackupError, match="use a number"):
            parse_period(bad)
    manifest = Manifest("x", "demo", at.isoformat(), {"redis.rdb": FileEntry(3, "ab")}, {"entries": 2})
    assert Manifest.from_dict(manifest.to_dict()) == manifest
    with pytest.raises(BackupError, match="version"):
        Manifest.from_dict({**manifest.to_dict(), "version": 99})
    with pytest.raises(BackupError, match="malformed"):
        Manifest.from_dict({"version": 1})


def test_retention_keeps_the_young_and_always_the_newest_complete_backup() -> None:
    now = datetime(2026, 12, 10, tzinfo=UTC)
    ids = [backup_id(now - timedelta(days=d)) for d in (1, 3, 9, 20)]
    assert to_remove(ids, [], now=now, retention=timedelta(days=7)) == sorted(ids[2:])
    # Every complete backup is old: the newest stays, whatever the retention.
    assert to_remove(ids[2:], [], now=now, retention=timedelta(days=1)) == [ids[3]]
    unfinished = [backup_id(now - timedelta(days=8)), backup_id(now - timedelta(minutes=5))]
    assert to_remove([], unfinished, now=now, retention=timedelta(days=7)) == [unfinished[0]]
