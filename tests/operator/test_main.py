from __future__ import annotations

import os
import subprocess
import sys

import pytest
from resonance_operator import __main__ as entry
from resonance_operator import __version__
from resonance_operator.errors import CredentialsError
from resonance_operator.handlers import run as run_module
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


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_need_no_settings_and_no_cluster(
    flag: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Settings that would not even parse, and nowhere to find a cluster.
    monkeypatch.setenv("RESONANCE_OPERATOR_METRICS_PORT", "not-a-port")
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/kubeconfig")
    with pytest.raises(SystemExit) as exited:
        entry.main([flag])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    if flag == "--version":
        assert out.strip() == f"resonance-operator {__version__}"
    else:
        assert out.startswith("usage: resonance-operator")
        for name in OperatorSettings.model_fields:
            assert f"RESONANCE_OPERATOR_{name.upper()}" in out


def test_the_console_script_answers_help_in_a_bare_environment() -> None:
    bare = {"PATH": os.environ.get("PATH", ""), "HOME": "/nonexistent"}
    for flag in ("--help", "--version"):
        done = subprocess.run(
            [sys.executable, "-m", "resonance_operator", flag], env=bare, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr and "resonance-operator" in done.stdout


def test_no_cluster_is_a_message_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_cluster(settings: OperatorSettings) -> None:
        raise CredentialsError("no kubeconfig and not in a cluster")

    monkeypatch.setattr(run_module, "run", no_cluster)
    with pytest.raises(SystemExit) as exited:
        entry.main([])
    assert exited.value.code == 2
    assert capsys.readouterr().err == "resonance-operator: no kubeconfig and not in a cluster\n"
