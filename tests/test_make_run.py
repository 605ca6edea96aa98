"""``make run`` installs the worker's runtime only: its environment comes from requirements/worker.lock (the
image's lock), holds no development tools, and a worker started from it serves, with the web console
``make console`` built into the package at ``/``."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.harness.worker import WorkerProcess

ROOT = Path(__file__).resolve().parents[1]
DEVELOPMENT_ONLY = ("pytest", "mypy", "centrifuge", "neurokit2", "matplotlib")


def test_the_run_environment_is_the_runtime_lock_and_serves(tmp_path: Path) -> None:
    venv = tmp_path / "venv-run"
    built = subprocess.run(
        ["make", "--no-print-directory", f"RUN_VENV={venv}", f"{venv}/.synced"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    assert "requirements/worker.lock" in built.stdout
    python = venv / "bin" / "python"
    for module in DEVELOPMENT_ONLY:
        found = subprocess.run([python, "-c", f"import {module}"], capture_output=True, timeout=60)
        assert found.returncode != 0, f"{module} is in the runtime environment"
    # make run builds the console into the package first (npm; skipped when up to date), then serves it.
    console = subprocess.run(
        ["make", "--no-print-directory", "console"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert console.returncode == 0, console.stdout + console.stderr
    worker = WorkerProcess(tmp_path, name="runtime-only", python=str(python)).start()
    try:
        assert worker.http("GET", "/health")[0] == 200
        status, page = worker.http("GET", "/")
        assert status == 200 and "<title>Resonance console</title>" in page
    finally:
        worker.stop()
