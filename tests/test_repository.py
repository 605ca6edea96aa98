"""Promises about what the repository holds: generated output stays out of git beyond small summaries."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KEPT_BENCHMARK_BYTES = 1_000_000
"""docs/benchmarks keeps small figures and a compressed sample of raw runs: under 1 MB in all."""


def _tracked(*paths: str) -> list[Path]:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--", *paths], cwd=ROOT, check=True, capture_output=True
    ).stdout
    return [ROOT / name for name in listing.decode().split("\0") if name]


def test_no_benchmark_results_are_tracked() -> None:
    assert _tracked("bench/results") == []


def test_docs_keep_figures_and_a_compressed_sample_only() -> None:
    kept = _tracked("docs/benchmarks")
    assert kept, "docs/benchmarks should hold the figures the tables refer to"
    assert {path.suffix for path in kept} <= {".png", ".xz"}, kept
    assert sum(path.stat().st_size for path in kept) < KEPT_BENCHMARK_BYTES


def test_every_figure_docs_show_is_committed() -> None:
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    kept = {path.name for path in _tracked("docs/benchmarks")}
    shown = {
        line.split("(benchmarks/")[1].split(")")[0] for line in text.splitlines() if "](benchmarks/" in line
    }
    assert shown and shown <= kept, shown - kept
