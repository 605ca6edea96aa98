"""Errors the biometrics core raises for input it refuses.

::

    WorkerError                            (resonance_worker.errors)
    └── BiometricsError                    base of everything this package raises on purpose
        ├── BiometricsConfigError          a StreamConfig that cannot work
        └── InvalidSamplesError            a batch was refused; nothing of it was stored
            ├── TimestampsNotIncreasingError   a timestamp repeats or goes backwards
            ├── BatchTooLargeError             more samples (or seconds) in one batch than allowed
            ├── UnsupportedRateError           the batch's median rate is outside the sensor's range
            └── SourceMismatchError            RGB frames and raw PPG mixed in one stream

A refused batch never changes the stream: what was accepted before stays.
Missing values (NaN) inside an otherwise valid batch are *not* errors: they are
stored as gaps and lower the signal quality, down to 0.
"""

from __future__ import annotations

from resonance_worker.errors import WorkerError


class BiometricsError(WorkerError):
    """Base class for errors raised deliberately by the biometrics core."""


class BiometricsConfigError(BiometricsError):
    """A stream configuration that cannot work (e.g. a window shorter than its update interval)."""


class InvalidSamplesError(BiometricsError):
    """A batch of samples was refused as a whole; the stream state is unchanged."""


class TimestampsNotIncreasingError(InvalidSamplesError):
    """Timestamps must strictly increase, within a batch and across batches."""


class BatchTooLargeError(InvalidSamplesError):
    """The batch holds more samples, or spans more seconds, than one batch may."""


class UnsupportedRateError(InvalidSamplesError):
    """The batch's median sampling rate is outside the range accepted for that sensor."""


class SourceMismatchError(InvalidSamplesError):
    """One stream takes either RGB camera frames or raw PPG samples, not both."""
