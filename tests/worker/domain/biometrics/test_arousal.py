"""Personal baseline statistics and the arousal index."""

from __future__ import annotations

import math

import numpy as np
import pytest
from resonance_worker.domain.biometrics.arousal import PersonalBaseline, RunningStats, combine


def test_running_stats_match_numpy() -> None:
    values = [60.0, 62.0, 61.0, 65.0, 59.0]
    stats = RunningStats()
    for v in values:
        stats.add(v)
    assert stats.mean == pytest.approx(np.mean(values))
    assert stats.std == pytest.approx(np.std(values, ddof=1))
    assert RunningStats().std == 0.0


def test_baseline_becomes_ready_then_freezes() -> None:
    baseline = PersonalBaseline(min_hr_readings=3, min_hrv_readings=1)
    for bpm in (60.0, 62.0, 64.0):
        baseline.learn("hr", bpm)
    assert not baseline.ready
    baseline.learn("ln_rmssd", math.log(40.0))
    assert baseline.ready and baseline.frozen
    baseline.learn("hr", 200.0)  # ignored once frozen
    assert baseline.stats["hr"].mean == pytest.approx(62.0)


def test_z_scores_flip_rmssd_and_respect_spread_floors() -> None:
    baseline = PersonalBaseline(min_hr_readings=2, min_hrv_readings=2)
    for bpm in (60.0, 60.0):
        baseline.learn("hr", bpm)
    for ms in (40.0, 40.0):
        baseline.learn("ln_rmssd", math.log(ms))
    z = baseline.z_scores({"hr": 66.0, "ln_rmssd": math.log(40.0) - 0.3, "breathing": 15.0})
    assert z["hr"] == pytest.approx(2.0)  # spread floor 3 bpm
    assert z["ln_rmssd"] == pytest.approx(2.0)  # lower RMSSD counts as more aroused; floor 0.15
    assert z["breathing"] is None  # no breathing baseline yet


@pytest.mark.parametrize(
    ("z", "level"), [(2.0, "above_baseline"), (0.0, "near_baseline"), (-2.0, "below_baseline")]
)
def test_combine_levels(z: float, level: str) -> None:
    total, index, found = combine({"hr": z, "ln_rmssd": z, "breathing": None})
    assert total == pytest.approx(z)
    assert index == pytest.approx(0.5 + 0.5 * math.tanh(z / 2))
    assert found == level


def test_combine_needs_heart_rate() -> None:
    assert combine({"hr": None, "ln_rmssd": 1.0}) == (None, None, None)


def test_baseline_round_trips_through_plain_data() -> None:
    baseline = PersonalBaseline(min_hr_readings=1, min_hrv_readings=1)
    baseline.learn("hr", 70.0)
    baseline.learn("ln_rmssd", 3.5)
    restored = PersonalBaseline.from_dict(baseline.to_dict(), min_hr_readings=1, min_hrv_readings=1)
    assert restored.frozen and restored.stats["hr"].mean == 70.0


def test_baseline_ignores_malformed_plain_data() -> None:
    junk = {
        "frozen": True,
        "stats": {"hr": [1, float("nan"), 0], "ln_rmssd": "x", "other": [1, 2, 3], "breathing": [-1, 0, 0]},
    }
    restored = PersonalBaseline.from_dict(junk, min_hr_readings=1, min_hrv_readings=1)
    assert not restored.frozen and restored.stats["hr"].count == 0
    assert PersonalBaseline.from_dict({}, min_hr_readings=1, min_hrv_readings=1).stats["hr"].count == 0
