"""Beat intervals: which are clean, and the time-domain statistics computed from them.

Definitions (match pyhrv / hrv-analysis / Kubios):

* RMSSD = sqrt(mean(ΔNN²)) over successive differences of *adjacent clean* intervals;
* SDNN = sample standard deviation (ddof = 1) of the clean intervals;
* pNN50 = share (%) of those successive differences with |ΔNN| > 50 ms — the
  denominator is the number of differences, not of intervals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from resonance_worker.domain.biometrics.beats import MAX_INTERVAL_S, MIN_INTERVAL_S
from resonance_worker.domain.biometrics.buffer import FloatArray

BoolArray = npt.NDArray[np.bool_]

MAX_LOCAL_DEVIATION = 0.3
"""An interval further than 30 % from its neighbours' median is a missed or extra beat."""
LOCAL_SPAN = 4
"""Neighbours on each side used for that local median."""


@dataclass(frozen=True, slots=True)
class Intervals:
    """Intervals between consecutive detected beats (seconds) and whether each is clean."""

    ends: FloatArray
    """Time of the later beat of each interval."""
    seconds: FloatArray
    clean: BoolArray

    @property
    def clean_seconds(self) -> FloatArray:
        return self.seconds[self.clean]

    def clean_span(self) -> float:
        """Total time covered by clean intervals."""
        return float(self.seconds[self.clean].sum())


def select_intervals(times: FloatArray, beat_ok: BoolArray) -> Intervals:
    """Intervals between successive beats; clean when both beats are ok, the length is
    plausible (35–220 bpm) and it is within 30 % of the local median of plausible intervals."""
    if times.size < 2:
        empty = np.empty(0)
        return Intervals(empty, empty, np.zeros(0, dtype=bool))
    seconds = np.diff(times)
    candidate = beat_ok[1:] & beat_ok[:-1] & (seconds >= MIN_INTERVAL_S) & (seconds <= MAX_INTERVAL_S)
    clean = np.zeros(seconds.size, dtype=bool)
    plausible = np.flatnonzero((seconds >= MIN_INTERVAL_S) & (seconds <= MAX_INTERVAL_S))
    judged = np.flatnonzero(candidate)
    if plausible.size and judged.size:
        # Median of the plausible intervals within LOCAL_SPAN places either side of each one.
        padded = np.concatenate(
            (np.full(LOCAL_SPAN, np.nan), seconds[plausible], np.full(LOCAL_SPAN + 1, np.nan))
        )
        windows = sliding_window_view(padded, 2 * LOCAL_SPAN + 1)
        local = _row_medians(windows[np.searchsorted(plausible, judged)])
        clean[judged] = np.abs(seconds[judged] - local) <= MAX_LOCAL_DEVIATION * local
    return Intervals(times[1:], seconds, clean)


def _row_medians(rows: FloatArray) -> FloatArray:
    """Median of each row ignoring NaN (every row has at least one number); much faster than
    np.nanmedian on many short rows."""
    ordered = np.sort(rows, axis=1)  # NaN sorts last
    count = np.isfinite(rows).sum(axis=1)
    index = np.arange(rows.shape[0])
    medians: FloatArray = 0.5 * (ordered[index, (count - 1) // 2] + ordered[index, count // 2])
    return medians


def successive_differences_ms(intervals: Intervals) -> FloatArray:
    """ΔNN in ms between adjacent intervals that are both clean."""
    both = intervals.clean[1:] & intervals.clean[:-1]
    diffs: FloatArray = np.diff(intervals.seconds)[both] * 1000.0
    return diffs


def rmssd_ms(differences_ms: FloatArray) -> float | None:
    if differences_ms.size == 0:
        return None
    return float(np.sqrt(np.mean(np.square(differences_ms))))


def sdnn_ms(intervals_ms: FloatArray) -> float | None:
    if intervals_ms.size < 2:
        return None
    return float(np.std(intervals_ms, ddof=1))


def pnn50_pct(differences_ms: FloatArray) -> float | None:
    if differences_ms.size == 0:
        return None
    return float(100.0 * np.mean(np.abs(differences_ms) > 50.0))


def mean_hr_bpm(intervals_s: FloatArray) -> float | None:
    """Mean of the instantaneous rates 60/NN (the mean the ECG reference uses)."""
    if intervals_s.size == 0:
        return None
    return float(np.mean(60.0 / intervals_s))
