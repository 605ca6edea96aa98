"""StreamConfig refuses settings that cannot work, all problems in one message."""

from __future__ import annotations

from typing import Any

import pytest
from resonance_worker.domain.biometrics import BiometricsConfigError, StreamConfig


def test_defaults_are_valid_and_keep_the_longest_window() -> None:
    config = StreamConfig()
    assert config.buffer_s == 125.0
    assert config.first_hr_after_s <= 8.0  # the first heart rate within 8 s


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"grid_hz": 5.0}, "grid_hz"),
        ({"hr_interval_s": 0.0}, "hr_interval_s"),
        ({"hr_interval_s": 11.0}, "hr_interval_s"),
        ({"first_hr_after_s": 2.0}, "first_hr_after_s"),
        ({"hrv_window_s": 200.0}, "hrv_interval_s <= hrv_window_s <= long_hrv_window_s"),
        ({"hrv_window_s": 20.0}, "below 30 s"),
        ({"hr_window_s": 6.0, "first_hr_after_s": 5.0}, "below 8 s"),
        ({"min_breathing_window_s": 70.0}, "min_breathing_window_s"),
        ({"max_gap_s": 0.0}, "max_gap_s"),
        ({"quality_threshold": 1.5}, "quality_threshold"),
        ({"hrv_min_clean_fraction": -0.1}, "hrv_min_clean_fraction"),
        ({"motion_threshold_ms2": 0.0}, "motion_threshold_ms2"),
        ({"baseline_min_hr_readings": 0}, "baseline minimum"),
        ({"camera_region": "ear"}, "camera_region"),
        ({"face_method": "ir"}, "face_method"),
        ({"max_batch_samples": 0}, "batch limits"),
        ({"min_ppg_rate_hz": 50.0, "max_ppg_rate_hz": 40.0}, "rate range"),
    ],
)
def test_refuses_unworkable_settings(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(BiometricsConfigError, match=message):
        StreamConfig(**changes)


def test_reports_every_problem_at_once() -> None:
    with pytest.raises(BiometricsConfigError) as caught:
        StreamConfig(grid_hz=1.0, max_gap_s=-1.0)
    assert "grid_hz" in str(caught.value) and "max_gap_s" in str(caught.value)
