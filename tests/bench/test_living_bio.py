"""The biometric-update benchmark runs and writes its side-by-side JSON (numbers are not asserted)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.living import bio_update


def test_bio_update_benchmark_writes_both_sides(tmp_path: Path) -> None:
    out = tmp_path / "living_bio.json"
    result = bio_update.main(["--seconds", "12", "--out", str(out)])
    written = json.loads(out.read_text())
    assert written == result
    for side in ("baseline_core", "worker_bio_push"):
        assert written[side]["updates"] == 12
        assert written[side]["cpu_p95_ms"] >= written[side]["cpu_p50_ms"] >= 0
    assert written["budget_p95_ms"] == 20.0 and written["batch"] == "1 s of 30 Hz PPG"
