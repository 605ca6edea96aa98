"""Readings are frozen and serialise to plain JSON."""

from __future__ import annotations

import dataclasses
import json

import pytest
from resonance_worker.domain.biometrics import ArousalReading, BreathingReading, HeartRateReading, HrvReading


def test_readings_serialise_to_plain_json_with_their_kind() -> None:
    readings = [
        HeartRateReading(
            t=1.0, quality=0.91234567, bpm=70.123456, window_s=10.0, beats=12, motion=None, activity="unknown"
        ),
        HrvReading(
            t=2.0,
            quality=0.9,
            rmssd_ms=40.0,
            sdnn_ms=None,
            pnn50_pct=None,
            mean_hr_bpm=70.0,
            window_s=60.0,
            intervals=70,
            clean_fraction=0.9,
        ),
        BreathingReading(
            t=3.0,
            quality=0.8,
            rate_bpm=None,
            window_s=60.0,
            sources={"baseline": 15.0, "amplitude": None},
            reason="modulations_disagree",
        ),
        ArousalReading(
            t=4.0,
            quality=0.9,
            index=0.6,
            z=0.4,
            level="near_baseline",
            components={"hr": 0.4, "ln_rmssd": float("nan")},
            baseline_ready=True,
        ),
    ]
    plain = [r.to_dict() for r in readings]
    assert [p["kind"] for p in plain] == ["heart_rate", "hrv", "breathing", "arousal"]
    assert plain[0]["bpm"] == 70.1235 and plain[0]["quality"] == 0.9123
    assert plain[3]["components"] == {"hr": 0.4, "ln_rmssd": None}  # NaN never reaches JSON
    json.dumps(plain, allow_nan=False)


def test_readings_are_frozen() -> None:
    reading = HeartRateReading(
        t=1.0, quality=1.0, bpm=60.0, window_s=10.0, beats=10, motion=0.1, activity="still"
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        reading.bpm = 80.0  # type: ignore[misc]
