"""The committed sample of raw benchmark results: ``docs/benchmarks/runs-2026-11-25.tar.xz``.

New runs write to ``bench/results/`` (git-ignored); the runs the docs quote are kept compressed in
that archive, and read back from it here (for instance by the tests that render their reports).
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "docs" / "benchmarks" / "runs-2026-11-25.tar.xz"
_FOLDER = "bench-runs-2026-11-25"


def archived_result(name: str) -> Any:
    """The JSON document ``name`` (``biometrics.json``, ``load-<time>.json``, ...) from the archive."""
    with tarfile.open(RUNS, "r:xz") as archive:
        member = archive.extractfile(f"{_FOLDER}/{name}")
        if member is None:
            raise FileNotFoundError(f"{name} is not a file in {RUNS.name}")
        return json.load(member)
