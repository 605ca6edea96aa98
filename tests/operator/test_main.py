from __future__ import annotations

import pytest
from resonance_operator import __main__ as entry
from resonance_operator.settings import OperatorSettings


def test_invalid_settings_exit_with_a_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RESONANCE_OPERATOR_METRICS_PORT", "not-a-port")
    with pytest.raises(SystemExit) as exited:
        entry.main([])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "resonance-operator: invalid settings" in err and "metrics_port" in err


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESONANCE_OPERATOR_NAMESPACE", "apps")
    monkeypatch.setenv("RESONANCE_OPERATOR_RESYNC_SECONDS", "7.5")
    settings = OperatorSettings()
    assert (settings.namespace, settings.resync_seconds, settings.field_manager) == (
        "apps",
        7.5,
        "resonance-operator",
    )
    assert 1 <= settings.priority < 2**31
    assert settings.instance
