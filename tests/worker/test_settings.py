"""Settings: documented, in sync with docs/settings.md, validated."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from resonance_worker.settings import EngineKind, WorkerSettings, render_settings_doc

DOC = Path(__file__).resolve().parents[2] / "docs" / "settings.md"


def test_docs_settings_md_is_generated_from_the_model() -> None:
    assert DOC.read_text() == render_settings_doc(), (
        "docs/settings.md is stale: run `.venv/bin/python -m resonance_worker.settings > docs/settings.md`"
    )


def test_every_setting_is_described() -> None:
    for name, field in WorkerSettings.model_fields.items():
        assert field.description, name


def test_nested_and_json_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESONANCE_LIMITS__MAX_CONNECTIONS", "7")
    monkeypatch.setenv("RESONANCE_NAMESPACES", '{"room": {"presence": true, "history_size": 5}}')
    settings = WorkerSettings()
    assert settings.limits.max_connections == 7
    assert set(settings.namespaces) == {"room"} and settings.namespaces["room"].presence


def test_bad_settings_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError):
        WorkerSettings(engine=EngineKind.REDIS, redis_url="http://nope")
    monkeypatch.setenv("RESONANCE_NAMESPACES", '{"room": {"presense": true}}')
    with pytest.raises(ValidationError):
        WorkerSettings()


def test_several_processes_need_the_redis_engine_and_a_fixed_port() -> None:
    with pytest.raises(ValidationError, match="needs engine=redis"):
        WorkerSettings(processes=2)
    with pytest.raises(ValidationError, match="fixed port"):
        WorkerSettings(processes=2, engine=EngineKind.REDIS, port=0)
    assert WorkerSettings(processes=2, engine=EngineKind.REDIS, port=8000).processes == 2
