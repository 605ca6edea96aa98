"""Beats settled once and reused by every long window.

Every second the heart-rate analysis finds the beats of its 10 s window. A beat is
*settled* from the first such window in which it sits at least ``SETTLE_S`` inside both
edges (the left edge may be the segment's start): there the band-pass, the upstroke search
and the template see a whole beat of context either side, as in the middle of a long
window. The long windows (HRV 60/120 s, breathing 32–60 s) read the settled beats plus the
newest window's unsettled ones, instead of re-detecting thousands of samples every 5 s —
the per-update cost stops depending on the window length.
"""

from __future__ import annotations

import numpy as np

from resonance_worker.domain.biometrics.beats import MIN_INTERVAL_S, Beats
from resonance_worker.domain.biometrics.buffer import FloatArray

SETTLE_S = 3.0
"""How far inside a window's edges a beat must be before it is settled (≈ 3 beats at rest)."""
SAME_BEAT_S = MIN_INTERVAL_S
"""Two detections closer than the shortest plausible interval are one beat seen from two windows."""

_FIELDS = ("times", "amplitudes", "intensities", "morphology")


class BeatLedger:
    """Settled beats of the current segment, oldest dropped past ``keep_s``."""

    def __init__(self, keep_s: float) -> None:
        self._keep_s = keep_s
        self.segment: float | None = None
        self.settled_until = 0.0
        """Beats before this are settled (the latest settling window's end − ``SETTLE_S``)."""
        self._columns: dict[str, FloatArray] = {name: np.empty(0) for name in _FIELDS}

    def __len__(self) -> int:
        return int(self._columns["times"].size)

    def reset(self, segment: float) -> None:
        """Forget every beat: a new segment starts (windows never bridge a gap)."""
        self.segment = segment
        self.settled_until = segment
        self._columns = {name: np.empty(0) for name in _FIELDS}

    def lower_edge(self, window_start: float) -> float:
        """Earliest beat time a window starting at ``window_start`` may settle."""
        assert self.segment is not None
        return window_start if window_start <= self.segment + 1e-9 else window_start + SETTLE_S

    def settle(self, beats: Beats, window_start: float, window_end: float) -> None:
        """Settle the beats of one analysed window that are far enough inside it and new."""
        times = beats.times
        take = (times >= self.lower_edge(window_start)) & (times < window_end - SETTLE_S)
        take &= times > self._last_time() + SAME_BEAT_S
        if take.any():
            for name in _FIELDS:
                self._columns[name] = np.concatenate((self._columns[name], getattr(beats, name)[take]))
        self.settled_until = max(self.settled_until, window_end - SETTLE_S)
        keep = self._columns["times"] >= window_end - self._keep_s
        if not keep.all():
            self._columns = {name: column[keep] for name, column in self._columns.items()}

    def view(self, start: float, newest: Beats | None) -> Beats:
        """Settled beats from ``start`` on, then the newest window's beats after the last settled one."""
        times = self._columns["times"]
        first = int(np.searchsorted(times, start, side="left"))
        parts = {name: column[first:] for name, column in self._columns.items()}
        if newest is not None:
            after = (newest.times > self._last_time() + SAME_BEAT_S) & (newest.times >= start)
            parts = {name: np.concatenate((parts[name], getattr(newest, name)[after])) for name in _FIELDS}
        return Beats(
            times=parts["times"],
            peak_times=parts["times"],  # not kept: the long windows time beats by their upstroke
            amplitudes=parts["amplitudes"],
            intensities=parts["intensities"],
            morphology=parts["morphology"],
            period_s=None,
            periodicity=0.0,
        )

    def _last_time(self) -> float:
        times = self._columns["times"]
        return float(times[-1]) if times.size else -np.inf
