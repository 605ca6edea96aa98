"""Accelerometer/gyroscope activity levels and labels."""

from __future__ import annotations

import numpy as np
import pytest
from resonance_worker.domain.biometrics.buffer import SampleBuffer
from resonance_worker.domain.biometrics.motion import activity_label, motion_per_second, moving_at


def sensor(name: str) -> SampleBuffer:
    return SampleBuffer(
        sensor=name,
        channels=3,
        keep_s=100,
        min_rate_hz=5,
        max_rate_hz=500,
        max_batch_samples=5000,
        max_batch_span_s=100,
    )


@pytest.mark.parametrize(
    ("level", "label"),
    [(None, "unknown"), (0.05, "still"), (0.3, "light"), (1.5, "moving"), (5.0, "vigorous")],
)
def test_activity_labels(level: float | None, label: str) -> None:
    assert activity_label(level) == label


def test_motion_per_second_sees_shaking_in_any_direction_not_gravity() -> None:
    accel, gyro = sensor("accelerometer"), sensor("gyroscope")
    t = np.arange(0, 4, 0.02)
    values = np.zeros((t.size, 3))
    values[:, 2] = 9.81
    shaking = (t >= 2) & (t < 3)
    values[shaking, 0] += np.sin(2 * np.pi * 3 * t[shaking])  # sideways: |a| barely changes
    accel.append(t, values)
    bins = motion_per_second(accel, gyro, 0.0, 4.0)
    assert bins is not None
    starts, levels = bins
    assert starts.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert levels[:2] == pytest.approx([0.0, 0.0], abs=1e-6)
    assert levels[2] == pytest.approx(1 / np.sqrt(2), rel=0.05)


def test_gyroscope_adds_to_the_level() -> None:
    accel, gyro = sensor("accelerometer"), sensor("gyroscope")
    t = np.arange(0, 2, 0.02)
    accel.append(t, np.tile([0.0, 0.0, 9.81], (t.size, 1)))
    gyro.append(t, np.tile([0.0, 0.5, 0.0], (t.size, 1)))
    bins = motion_per_second(accel, gyro, 0.0, 2.0)
    assert bins is not None
    assert bins[1] == pytest.approx([0.5, 0.5])


def test_no_accelerometer_means_unknown_motion() -> None:
    assert motion_per_second(sensor("a"), sensor("g"), 0.0, 10.0) is None
    assert moving_at(np.array([1.0, 2.0]), None, 0.6).tolist() == [0.0, 0.0]
    still = (np.array([0.0, 1.0]), np.array([0.1, 0.1]))
    assert moving_at(np.array([0.5]), still, 0.6).tolist() == [0.0]


def test_moving_at_marks_times_near_moving_seconds() -> None:
    bins = (np.array([0.0, 1.0, 2.0, 3.0]), np.array([0.1, 2.0, 0.1, 0.1]))
    times = np.array([0.2, 0.9, 1.5, 2.2, 2.5, 3.5])
    assert moving_at(times, bins, 0.6).tolist() == [0.0, 1.0, 1.0, 1.0, 0.0, 0.0]
