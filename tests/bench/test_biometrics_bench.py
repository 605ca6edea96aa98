"""The biometrics benchmark's own pieces: breathing evaluation, the compute split, the report."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest

from bench.archive import archived_result
from bench.biometrics import baselines, report, run, synthetic

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(name) is None for name in ("heartpy", "neurokit2", "pyphysio")),
    reason="the baselines and recordings come with the dev extra: uv sync --all-extras",
)


def synthetic_pulse(seconds: float, breathing_bpm: float) -> tuple[np.ndarray, np.ndarray]:
    beats = synthetic.beat_times(seconds, hr_bpm=70.0, breathing_bpm=breathing_bpm)
    t = np.arange(int(seconds * run.RATE_HZ)) / run.RATE_HZ
    return t, synthetic.pulse_at(t, beats, breathing_bpm=breathing_bpm)


def test_breathing_is_scored_on_our_windows_beside_both_baselines() -> None:
    t, pulse = synthetic_pulse(50.0, 12.0)
    streamed = run.stream(t, pulse, run.GATED)
    assert len(streamed.breathing) == 4  # at 32, 37, 42 and 47 s
    scored = run.evaluate_breathing(pulse, streamed, lambda _start, _end: 12.0)
    assert scored["ours"]["windows"] == 4 and scored["ours"]["coverage"] == 1.0
    assert scored["ours"]["mae_bpm"] <= 0.5
    for name in baselines.BREATHING:
        assert scored[name]["windows"] == 4
        assert scored[name]["coverage"] is not None
    assert scored["ours_reasons"] == {}


def test_baseline_breathing_estimators_give_a_rate_or_nan() -> None:
    _, pulse = synthetic_pulse(60.0, 15.0)
    for estimator in baselines.BREATHING.values():
        value = baselines.run_breathing_quietly(estimator, pulse, run.RATE_HZ)
        assert math.isnan(value) or 5.0 <= value <= 45.0
    assert math.isnan(baselines.run_breathing_quietly(baselines.heartpy_breathing, np.zeros(300), 30.0))


def test_heavy_updates_are_the_batches_where_hrv_or_breathing_fell_due() -> None:
    t, pulse = synthetic_pulse(70.0, 15.0)
    streamed = run.stream(t, pulse, run.GATED)
    heavy = run.heavy_updates(t, streamed)
    assert len(heavy) == len(streamed.update_ms) == 70
    # Breathing from 32 s every 5 s (8 by 70 s), HRV at 60 and 65 s: two seconds apart, never together.
    assert len(streamed.breathing) == 8 and len(streamed.hrv) == 2
    assert sum(heavy) == len({r.t for r in streamed.breathing} | {r.t for r in streamed.hrv}) == 10


def test_belt_reference_counts_breaths_in_the_window() -> None:
    from bench.biometrics import data

    record = data.pyphysio_medical(30.0)
    assert 30 <= record.breath_times_s.size <= 40  # 34 breaths in 2 minutes
    assert record.belt_rate_bpm(1.0, 60.0) == pytest.approx(19.5, abs=1.0)
    assert math.isnan(record.belt_rate_bpm(50.0, 53.0))


def test_the_report_renders_every_section_of_the_committed_result() -> None:
    results = archived_result("biometrics.json")
    text = report.render(results)
    for title in report.TITLES.values():
        assert f"**{title}**" in text
    assert "settled_beats_new" in text and "reanalyse_old" in text
    assert "nk_rate_derived" in text and "heartpy_rifv" in text
    assert text.count("\n| ") > 40
