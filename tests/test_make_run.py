"""``make run`` installs the worker's runtime only: its environment comes from requirements/worker.lock (the
image's lock), holds no development tools, and a worker started from it serves."""

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
    worker = WorkerProcess(tmp_path, name="runtime-only", python=str(python)).start(timeout=60)
    try:
        assert worker.http("GET", "/health")[0] == 200
    finally:
        worker.stop()
