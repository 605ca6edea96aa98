"""A validated, time-bounded store of timestamped samples for one sensor."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from resonance_worker.domain.biometrics.errors import (
    BatchTooLargeError,
    InvalidSamplesError,
    TimestampsNotIncreasingError,
    UnsupportedRateError,
)

FloatArray = npt.NDArray[np.float64]
ArrayLike = Sequence[float] | Sequence[Sequence[float]] | FloatArray

# Finite values beyond this are garbage from a broken client, not a sensor reading.
_MAX_ABS_VALUE = 1e9


class SampleBuffer:
    """Samples of ``channels`` values each, oldest dropped past ``keep_s`` seconds.

    ``append`` checks the whole batch before storing any of it, so a refused batch
    leaves the buffer as it was. A row with any missing (NaN/inf) value is stored
    as missing for all channels: it becomes a gap, not an error.
    """

    def __init__(
        self,
        *,
        sensor: str,
        channels: int,
        keep_s: float,
        min_rate_hz: float,
        max_rate_hz: float,
        max_batch_samples: int,
        max_batch_span_s: float,
        max_gap_s: float = 1.0,
    ) -> None:
        self.sensor = sensor
        self._max_gap_s = max_gap_s
        self._run_start: float | None = None  # first valid sample after the last gap
        self._last_valid: float | None = None
        self.channels = channels
        self._keep_s = keep_s
        self._min_rate_hz = min_rate_hz
        self._max_rate_hz = max_rate_hz
        self._max_batch_samples = max_batch_samples
        self._max_batch_span_s = max_batch_span_s
        self._times: FloatArray = np.empty(0)
        self._values: FloatArray = np.empty((0, channels))

    @property
    def last_time(self) -> float | None:
        return float(self._times[-1]) if self._times.size else None

    @property
    def first_time(self) -> float | None:
        return float(self._times[0]) if self._times.size else None

    def __len__(self) -> int:
        return int(self._times.size)

    def append(self, timestamps: ArrayLike, values: ArrayLike) -> int:
        """Validate and store one batch; return how many samples it held."""
        times, rows = self._validated(timestamps, values)
        if times.size == 0:
            return 0
        valid = times[np.isfinite(rows).all(axis=1)]
        if valid.size:
            if self._last_valid is None or valid[0] - self._last_valid > self._max_gap_s:
                self._run_start = float(valid[0])
            gaps = np.flatnonzero(np.diff(valid) > self._max_gap_s)
            if gaps.size:
                self._run_start = float(valid[gaps[-1] + 1])
            self._last_valid = float(valid[-1])
        self._times = np.concatenate((self._times, times))
        self._values = np.concatenate((self._values, rows))
        keep_from = int(np.searchsorted(self._times, self._times[-1] - self._keep_s, side="left"))
        if keep_from:
            self._times = self._times[keep_from:]
            self._values = self._values[keep_from:]
        return int(times.size)

    def window(self, start: float, end: float) -> tuple[FloatArray, FloatArray]:
        """Samples with ``start <= t <= end`` (missing rows included as NaN)."""
        low = int(np.searchsorted(self._times, start, side="left"))
        high = int(np.searchsorted(self._times, end, side="right"))
        return self._times[low:high], self._values[low:high]

    def segment_start(self, end: float) -> float | None:
        """Start of the current gap-free run of valid samples, or None when the signal has
        stopped (no valid sample within ``max_gap_s`` before ``end``). Trimming old samples
        does not move it."""
        if self._last_valid is None or end - self._last_valid > self._max_gap_s:
            return None
        return self._run_start

    def _validated(self, timestamps: ArrayLike, values: ArrayLike) -> tuple[FloatArray, FloatArray]:
        sensor = self.sensor
        try:
            times = np.asarray(timestamps, dtype=np.float64)
            rows = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidSamplesError(f"{sensor}: timestamps and values must be numbers ({exc})") from None
        if times.ndim != 1:
            raise InvalidSamplesError(f"{sensor}: timestamps must be a flat list")
        if rows.ndim == 1 and self.channels == 1:
            rows = rows.reshape(-1, 1)
        if rows.ndim != 2 or rows.shape[1] != self.channels:
            raise InvalidSamplesError(f"{sensor}: each sample needs exactly {self.channels} value(s)")
        if rows.shape[0] != times.size:
            raise InvalidSamplesError(f"{sensor}: {times.size} timestamps but {rows.shape[0]} samples")
        if times.size == 0:
            return times, rows
        if times.size > self._max_batch_samples:
            raise BatchTooLargeError(
                f"{sensor}: {times.size} samples in one batch (limit {self._max_batch_samples})"
            )
        if not np.isfinite(times).all():
            raise InvalidSamplesError(f"{sensor}: timestamps must be finite numbers (seconds)")
        if times.size > 1 and float(times[-1] - times[0]) > self._max_batch_span_s:
            raise BatchTooLargeError(
                f"{sensor}: batch spans {times[-1] - times[0]:.1f} s (limit {self._max_batch_span_s:g} s)"
            )
        steps = np.diff(times)
        if (steps <= 0).any():
            raise TimestampsNotIncreasingError(f"{sensor}: timestamps must strictly increase within a batch")
        last = self.last_time
        if last is not None and times[0] <= last:
            raise TimestampsNotIncreasingError(
                f"{sensor}: batch starts at {times[0]:.3f} s, not after the previous sample at {last:.3f} s"
            )
        if steps.size >= 2:
            rate = 1.0 / float(np.median(steps))
            if not self._min_rate_hz <= rate <= self._max_rate_hz:
                raise UnsupportedRateError(
                    f"{sensor}: {rate:.1f} Hz is outside {self._min_rate_hz:g}..{self._max_rate_hz:g} Hz"
                )
        finite = np.isfinite(rows)
        if (np.abs(rows[finite]) > _MAX_ABS_VALUE).any():
            raise InvalidSamplesError(f"{sensor}: values beyond ±{_MAX_ABS_VALUE:g} are not sensor readings")
        rows = rows.copy()
        rows[~finite.all(axis=1)] = np.nan
        return times, rows
