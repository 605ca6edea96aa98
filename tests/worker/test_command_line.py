"""``resonance-worker --help`` and ``--version`` answer without settings (the console script, for real)."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import resonance_worker

SCRIPT = Path(sys.executable).with_name("resonance-worker")
BROKEN_SETTINGS = {"RESONANCE_PORT": "not-a-port", "RESONANCE_ENGINE": "no-such-engine"}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **BROKEN_SETTINGS}
    return subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60)


def test_version_is_the_package_version() -> None:
    assert resonance_worker.__version__ == importlib.metadata.version("resonance-liminal")
    done = _run("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"resonance-worker {resonance_worker.__version__}"


def test_help_names_the_settings_without_reading_them() -> None:
    done = _run("--help")
    assert done.returncode == 0, done.stderr
    assert "RESONANCE_JWT_SECRET" in done.stdout and "docs/settings.md" in done.stdout
    assert "Traceback" not in done.stderr


def test_without_arguments_the_broken_settings_are_refused() -> None:
    """The control: the same environment does reach the settings when the worker really starts."""
    done = _run()
    assert done.returncode == 2
    assert "invalid settings" in done.stderr


def test_an_unknown_argument_is_refused_with_usage() -> None:
    done = _run("--port", "9000")
    assert done.returncode == 2
    assert "usage: resonance-worker" in done.stderr
