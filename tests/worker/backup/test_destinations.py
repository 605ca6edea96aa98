"""Both destinations on real storage: a directory, and S3 (real S3Proxy, signatures checked)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from resonance_worker.backup.destination import DirectoryDestination, S3Destination
from resonance_worker.backup.plan import BackupError
from resonance_worker.backup.sigv4 import Credentials

from tests.harness.s3 import S3Server


async def _exercise(destination: DirectoryDestination | S3Destination, tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(3_000_000))
    await destination.put("20261205T230000Z", "redis.rdb", blob)
    await destination.put("20261205T230000Z", "manifest.json", blob)
    await destination.put("20261206T230000Z", "redis.rdb", blob)
    assert await destination.backups() == (["20261205T230000Z"], ["20261206T230000Z"])
    back = tmp_path / "back"
    await destination.get("20261205T230000Z", "redis.rdb", back)
    assert back.read_bytes() == blob.read_bytes()
    await destination.remove("20261206T230000Z")
    assert await destination.backups() == (["20261205T230000Z"], [])
    with pytest.raises(BackupError):
        await destination.get("20261207T230000Z", "redis.rdb", back)


async def test_a_directory_destination(tmp_path: Path) -> None:
    await _exercise(DirectoryDestination(tmp_path / "pvc", "demo"), tmp_path)


async def test_an_s3_destination_and_a_wrong_secret(tmp_path: Path) -> None:
    server = await asyncio.to_thread(S3Server(tmp_path / "s3").start)
    try:
        destination = S3Destination(
            server.endpoint, "backups", "demo cluster", Credentials(server.access_key, server.secret_key)
        )
        await destination.ensure_bucket()
        await destination.ensure_bucket()  # it exists: fine
        await _exercise(destination, tmp_path)
        wrong = S3Destination(server.endpoint, "backups", "demo", Credentials(server.access_key, "wrong"))
        with pytest.raises(BackupError, match="403"):
            await wrong.backups()
    finally:
        server.stop()
