"""Streaming biometrics: heart rate, HRV, breathing, signal quality, motion and arousal.

Pure and synchronous (numpy/scipy only): samples come in with their timestamps,
frozen readings come out. See ``docs/biometrics.md`` for every algorithm and limit.

    stream = BiometricStream(StreamConfig(camera_region="finger"))
    stream.push_motion(t_imu, accel_xyz, gyro_xyz)
    for reading in stream.push_rgb(t_frames, rgb_means):
        publish(reading.to_dict())
"""

from resonance_worker.domain.biometrics.arousal import PersonalBaseline
from resonance_worker.domain.biometrics.config import StreamConfig
from resonance_worker.domain.biometrics.errors import (
    BatchTooLargeError,
    BiometricsConfigError,
    BiometricsError,
    InvalidSamplesError,
    SourceMismatchError,
    TimestampsNotIncreasingError,
    UnsupportedRateError,
)
from resonance_worker.domain.biometrics.readings import (
    ArousalReading,
    BreathingReading,
    HeartRateReading,
    HrvReading,
    Reading,
)
from resonance_worker.domain.biometrics.stream import BiometricStream

__all__ = [
    "ArousalReading",
    "BatchTooLargeError",
    "BiometricStream",
    "BiometricsConfigError",
    "BiometricsError",
    "BreathingReading",
    "HeartRateReading",
    "HrvReading",
    "InvalidSamplesError",
    "PersonalBaseline",
    "Reading",
    "SourceMismatchError",
    "StreamConfig",
    "TimestampsNotIncreasingError",
    "UnsupportedRateError",
]
