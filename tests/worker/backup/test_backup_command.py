"""The backup command's refusals, before it touches any store."""

from __future__ import annotations

from pathlib import Path

import pytest
from resonance_worker.backup.__main__ import main


def test_a_redis_cluster_backup_is_refused_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RESONANCE_BACKUP_PATH", str(tmp_path))
    monkeypatch.setenv("RESONANCE_ENGINE", "redis")
    monkeypatch.setenv("RESONANCE_REDIS_MODE", "cluster")
    monkeypatch.setenv("RESONANCE_REDIS_CLUSTER_NODES", '["127.0.0.1:1"]')
    assert main(["backup"]) == 1
    assert "a Redis Cluster is not backed up by this job" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing written
