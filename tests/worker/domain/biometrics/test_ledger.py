"""Settled beats: each beat kept once, from a window where it sits well inside both edges."""

from __future__ import annotations

import numpy as np
import pytest
from resonance_worker.domain.biometrics import BiometricStream, HrvReading, StreamConfig
from resonance_worker.domain.biometrics.beats import Beats
from resonance_worker.domain.biometrics.ledger import SETTLE_S, BeatLedger

from bench.biometrics import synthetic


def beats_at(times: list[float] | np.ndarray) -> Beats:
    t = np.asarray(times, dtype=np.float64)
    return Beats(t, t, np.ones(t.size), 2.0 * t, np.full(t.size, 0.95), 0.8, 0.9)


def test_a_beat_seen_from_overlapping_windows_is_settled_once() -> None:
    ledger = BeatLedger(keep_s=60.0)
    ledger.reset(0.0)
    # First window starts with the segment: its early beats count; its last 3 s wait.
    ledger.settle(beats_at(np.arange(0.2, 6.0, 0.8)), 0.0, 6.0)
    assert len(ledger) == 4 and ledger.settled_until == pytest.approx(3.0)
    # The next window sees the same beats a few ms off (other samples, other filter edges).
    ledger.settle(beats_at(np.arange(0.2, 7.0, 0.8) + 0.004), 0.0, 7.0)
    view = ledger.view(0.0, None)
    assert np.diff(view.times).min() > 0.7  # no beat twice
    assert view.times.size == 5 and ledger.settled_until == pytest.approx(4.0)


def test_the_view_adds_the_newest_windows_unsettled_beats_and_respects_its_start() -> None:
    ledger = BeatLedger(keep_s=60.0)
    ledger.reset(10.0)
    newest = beats_at(np.arange(10.1, 20.0, 0.8))
    ledger.settle(newest, 10.0, 20.0)
    view = ledger.view(12.0, newest)
    assert view.times[0] >= 12.0
    assert view.times[-1] == pytest.approx(newest.times[-1])  # up to the newest beat
    assert np.all(np.diff(view.times) > 0.7)
    assert view.intensities == pytest.approx(2.0 * view.times)  # columns stay aligned
    assert view.period_s is None


def test_edges_of_a_later_window_are_not_settled_and_old_beats_are_dropped() -> None:
    ledger = BeatLedger(keep_s=15.0)
    ledger.reset(0.0)
    assert ledger.lower_edge(0.0) == 0.0  # a window starting with the segment has no left edge
    assert ledger.lower_edge(5.0) == 5.0 + SETTLE_S
    # A window that starts after the segment: beats in its first 3 s are not settled from it.
    ledger.settle(beats_at([5.5, 6.5, 8.5, 9.5, 12.5]), 5.0, 15.0)
    assert list(ledger.view(0.0, None).times) == [8.5, 9.5]
    ledger.settle(beats_at([10.3, 11.1, 20.0, 27.5]), 20.0, 31.0)
    assert list(ledger.view(0.0, None).times) == [27.5]  # older than 31 − 15 s dropped; 20.0 on the edge
    ledger.reset(40.0)
    assert len(ledger) == 0 and ledger.settled_until == 40.0


def rmssd_readings(config: StreamConfig, batch_s: float) -> list[HrvReading]:
    beats = synthetic.beat_times(150, hr_bpm=68.0, breathing_bpm=12.0)
    t = synthetic.frame_times(150, jitter=0.1)
    pulse = synthetic.pulse_at(t, beats, breathing_bpm=12.0)
    stream = BiometricStream(config)
    out: list[HrvReading] = []
    batches = np.floor(t / batch_s).astype(int)
    for chunk in np.split(np.arange(t.size), np.flatnonzero(np.diff(batches)) + 1):
        out += [r for r in stream.push_ppg(t[chunk], pulse[chunk]) if isinstance(r, HrvReading)]
    return [r for r in out if r.rmssd_ms is not None]


def test_settled_beats_give_the_hrv_of_re_analysing_the_whole_window() -> None:
    settled = rmssd_readings(StreamConfig(), 1.0)
    reanalysed = rmssd_readings(StreamConfig(reanalyse_long_windows=True), 1.0)
    assert [r.t for r in settled] == [r.t for r in reanalysed] and len(settled) >= 15
    for a, b in zip(settled, reanalysed, strict=True):
        assert a.rmssd_ms == pytest.approx(b.rmssd_ms, abs=1.0)
        assert abs(a.intervals - b.intervals) <= 2


def test_long_batches_are_caught_up_so_no_beat_is_missing() -> None:
    # A client sending 20 s at a time: the heart-rate window reaches only the last 10 s, so the
    # stream analyses the stretch before it too; the HRV windows see every beat.
    settled = rmssd_readings(StreamConfig(), 20.0)
    reanalysed = rmssd_readings(StreamConfig(reanalyse_long_windows=True), 20.0)
    assert [r.t for r in settled] == [r.t for r in reanalysed] and len(settled) == 5
    for a, b in zip(settled, reanalysed, strict=True):
        assert a.rmssd_ms == pytest.approx(b.rmssd_ms, abs=1.0)
        assert abs(a.intervals - b.intervals) <= 2


def test_hrv_due_between_heart_rate_updates_settles_its_own_window() -> None:
    # Heart rate every 2 s, HRV every 5 s: every other HRV update falls between two heart rates.
    settled = rmssd_readings(StreamConfig(hr_interval_s=2.0), 1.0)
    reanalysed = rmssd_readings(StreamConfig(hr_interval_s=2.0, reanalyse_long_windows=True), 1.0)
    assert [r.t for r in settled] == [r.t for r in reanalysed] and len(settled) >= 15
    for a, b in zip(settled, reanalysed, strict=True):
        assert a.rmssd_ms == pytest.approx(b.rmssd_ms, abs=1.0)
