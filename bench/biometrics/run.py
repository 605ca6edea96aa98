"""Accuracy benchmark: our streaming core vs HeartPy and NeuroKit2 on the same windows.

Run: ``.venv/bin/python -m bench.biometrics.run`` (the ``make bench-bio`` target).
Writes ``bench/results/biometrics.json`` and ``bench/results/biometrics.png``.

Every method sees the same 10 s windows (1 s hop) of the same 30 Hz signal. Ours
is fed as a live stream (1 s batches with timestamps, plus the accelerometer where
the scenario has one) and reports what it would publish; the baselines process
each window from scratch. "Gated" rows keep only what passed a quality check,
always reported with their coverage.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from resonance_worker.domain.biometrics import (
    BiometricStream,
    BreathingReading,
    HeartRateReading,
    HrvReading,
    StreamConfig,
)
from resonance_worker.domain.biometrics.beats import detect_beats
from resonance_worker.domain.biometrics.dsp import uniform_grid

from bench.biometrics import baselines, data, synthetic
from bench.biometrics.metrics import FloatArray, beat_f1, summarise_hr, summarise_rmssd

RESULTS = Path(__file__).resolve().parent.parent / "results"
RATE_HZ = 30.0
HR_WINDOW_S = 10.0
HRV_WINDOW_S = 60.0
GATED = StreamConfig()
UNGATED = StreamConfig(quality_threshold=0.0, hrv_min_clean_fraction=0.0)
REANALYSE = StreamConfig(reanalyse_long_windows=True)
"""The previous path: every HRV/breathing update re-detects the beats of its whole window."""


@dataclass
class StreamRun:
    hr: list[HeartRateReading] = field(default_factory=list)
    hrv: list[HrvReading] = field(default_factory=list)
    breathing: list[BreathingReading] = field(default_factory=list)
    update_ms: list[float] = field(default_factory=list)
    update_cpu_ms: list[float] = field(default_factory=list)


def stream(
    times: FloatArray,
    values: FloatArray,
    config: StreamConfig,
    *,
    accel: FloatArray | None = None,
    rgb: bool = False,
) -> StreamRun:
    """Feed a recording to one stream in 1 s batches, timing each PPG push."""
    run = StreamRun()
    s = BiometricStream(config)
    seconds = np.floor(times).astype(int)
    edges = np.flatnonzero(np.diff(seconds)) + 1
    for chunk in np.split(np.arange(times.size), edges):
        if accel is not None:
            s.push_motion(times[chunk], accel[chunk])
        started, started_cpu = time.perf_counter(), time.thread_time()
        readings = (s.push_rgb if rgb else s.push_ppg)(times[chunk], values[chunk])
        run.update_ms.append((time.perf_counter() - started) * 1000.0)
        run.update_cpu_ms.append((time.thread_time() - started_cpu) * 1000.0)
        for reading in readings:
            if isinstance(reading, HeartRateReading):
                run.hr.append(reading)
            elif isinstance(reading, HrvReading):
                run.hrv.append(reading)
            elif isinstance(reading, BreathingReading):
                run.breathing.append(reading)
    return run


RefFn = Callable[[float, float], float]


def evaluate_hr(
    uniform: FloatArray,
    ours: dict[str, StreamRun],
    reference: RefFn,
    *,
    baseline_names: tuple[str, ...] = ("heartpy", "nk_elgendi", "nk_msptd", "nk_elgendi_sqi_gated"),
) -> dict[str, dict[str, Any]]:
    """HR metrics on the windows where ours emitted a full-window reading and a reference exists."""
    first = next(iter(ours.values()))
    ends = [r.t for r in first.hr if r.window_s >= HR_WINDOW_S - 1e-6]
    windows = [(t, reference(t - HR_WINDOW_S, t)) for t in ends]
    windows = [(t, ref) for t, ref in windows if math.isfinite(ref)]
    out: dict[str, dict[str, Any]] = {}
    for name, run in ours.items():
        by_time = {r.t: r for r in run.hr}
        scored = [
            (by_time[t].quality, by_time[t].bpm - ref)  # type: ignore[operator]
            for t, ref in windows
            if by_time[t].bpm is not None
        ]
        out[name] = summarise_hr([e for _, e in scored], len(windows), run.update_ms, run.update_cpu_ms)
        if "gated" not in name:
            # Coverage–accuracy curve: MAE over the best-quality share of the windows.
            ranked = sorted(scored, key=lambda item: -item[0])
            curve = {}
            for share in (0.2, 0.4, 0.6, 0.8, 1.0):
                kept = ranked[: max(1, round(share * len(windows)))]
                curve[f"{share:.1f}"] = round(float(np.mean([abs(e) for _, e in kept])), 3)
            out[name]["mae_by_top_quality_share"] = curve
            out[name]["_ranked"] = ranked
    samples = round(HR_WINDOW_S * RATE_HZ)
    for name in baseline_names:
        errors, costs, cpu_costs = [], [], []
        for t, ref in windows:
            stop = int(np.floor(t * RATE_HZ + 1e-6)) + 1
            window = uniform[max(0, stop - samples) : stop]
            started, started_cpu = time.perf_counter(), time.thread_time()
            if name == "nk_elgendi_sqi_gated":
                beats = baselines.run_quietly(baselines.neurokit_sqi_gated_beats, window, RATE_HZ)
                bpm = baselines.hr_from_beats(beats, gated=True) if beats is not None else math.nan
            else:
                beats = baselines.run_quietly(baselines.DETECTORS[name], window, RATE_HZ)
                bpm = baselines.hr_from_beats(beats) if beats is not None else math.nan
            costs.append((time.perf_counter() - started) * 1000.0)
            cpu_costs.append((time.thread_time() - started_cpu) * 1000.0)
            if math.isfinite(bpm):
                errors.append(bpm - ref)
        out[name] = summarise_hr(errors, len(windows), costs, cpu_costs)
    return out


def evaluate_rmssd(
    uniform: FloatArray, ours: dict[str, StreamRun], reference: RefFn, baseline_names: tuple[str, ...]
) -> None:
    """Adds RMSSD metrics (60 s windows, every 5 s) to each method's HR entry, in place."""
    first = next(iter(ours.values()))
    ends = [r.t for r in first.hrv if r.window_s >= HRV_WINDOW_S - 1e-6]
    return_values: dict[str, dict[str, Any]] = {}
    for name, run in ours.items():
        by_time = {r.t: r for r in run.hrv}
        errors = [
            by_time[t].rmssd_ms - reference(t - HRV_WINDOW_S, t)  # type: ignore[operator]
            for t in ends
            if by_time[t].rmssd_ms is not None
        ]
        return_values[name] = summarise_rmssd(errors, len(ends))
    samples = round(HRV_WINDOW_S * RATE_HZ)
    for name in baseline_names:
        errors = []
        for t in ends:
            stop = int(np.floor(t * RATE_HZ + 1e-6)) + 1
            window = uniform[max(0, stop - samples) : stop]
            detector = (
                baselines.neurokit_sqi_gated_beats
                if name == "nk_elgendi_sqi_gated"
                else baselines.DETECTORS[name]
            )
            beats = baselines.run_quietly(detector, window, RATE_HZ)
            value = baselines.rmssd_from_beats(beats) if beats is not None else math.nan
            if math.isfinite(value):
                errors.append(value - reference(t - HRV_WINDOW_S, t))
        return_values[name] = summarise_rmssd(errors, len(ends))
    RMSSD_RESULTS.append(return_values)


RMSSD_RESULTS: list[dict[str, dict[str, Any]]] = []


def summarise_breathing(errors: list[float], windows: int) -> dict[str, Any]:
    e = np.abs(np.asarray(errors, dtype=np.float64))
    return {
        "windows": windows,
        "coverage": round(e.size / windows, 4) if windows else None,
        "mae_bpm": round(float(e.mean()), 3) if e.size else None,
        "max_error_bpm": round(float(e.max()), 3) if e.size else None,
        "within_3bpm": round(float(np.mean(e <= 3.0)), 4) if e.size else None,
    }


def evaluate_breathing(uniform: FloatArray, run: StreamRun, reference: RefFn) -> dict[str, Any]:
    """Breathing rate on our gated stream's windows (32–60 s, every 5 s) against the reference in the
    same window; HeartPy's RIFV rate and NeuroKit2's rate-derived respiration on the same samples.
    Coverage = share of windows with a value; ours says "no estimate" when its modulations disagree."""
    windows = [(r, reference(r.t - r.window_s, r.t)) for r in run.breathing]
    windows = [(r, ref) for r, ref in windows if math.isfinite(ref)]
    out: dict[str, Any] = {
        "ours": summarise_breathing(
            [r.rate_bpm - ref for r, ref in windows if r.rate_bpm is not None], len(windows)
        )
    }
    for name, estimator in baselines.BREATHING.items():
        errors = []
        for reading, ref in windows:
            stop = int(np.floor(reading.t * RATE_HZ + 1e-6)) + 1
            window = uniform[max(0, stop - round(reading.window_s * RATE_HZ)) : stop]
            value = baselines.run_breathing_quietly(estimator, window, RATE_HZ)
            if math.isfinite(value):
                errors.append(value - ref)
        out[name] = summarise_breathing(errors, len(windows))
    out["ours_reasons"] = {
        reason: sum(1 for r, _ in windows if r.reason == reason)
        for reason in sorted({str(r.reason) for r, _ in windows if r.rate_bpm is None})
    }
    return out


def whole_record_f1(uniform: FloatArray, reference_beats: FloatArray) -> dict[str, float]:
    """Beat F1 over the whole record at 30 Hz, each method detecting once on all of it."""
    out: dict[str, float] = {}
    ours = detect_beats(uniform, RATE_HZ, 0.0)
    out["ours"] = round(beat_f1(reference_beats, ours.times), 4)
    for name, detector in baselines.DETECTORS.items():
        beats = baselines.run_quietly(detector, uniform, RATE_HZ)
        out[name] = round(beat_f1(reference_beats, beats), 4) if beats is not None else 0.0
    return out


def merge(
    hr: dict[str, dict[str, Any]], rmssd: dict[str, dict[str, Any]], f1: dict[str, float]
) -> dict[str, Any]:
    for name, entry in hr.items():
        entry.update(rmssd.get(name, {}))
        key = "ours" if name.startswith("ours") else name
        entry["beat_f1"] = f1.get(key, f1.get("nk_elgendi") if name == "nk_elgendi_sqi_gated" else None)
    return hr


# ---------------------------------------------------------------- scenarios
def motion_injection(n: int, amplitude: float, seed: int = 1) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(artefact to add, moving mask, accelerometer): in-band 0.5–3 Hz bursts in 20 % of the seconds."""
    t = np.arange(n) / RATE_HZ
    moving = synthetic.motion_bursts(t, 0.2, seed=seed)
    noise = synthetic.band_noise(t, seed=seed)
    return amplitude * 2.0 * noise * moving, moving, synthetic.accelerometer(t, moving)


def pyphysio_scenarios(results: dict[str, Any]) -> dict[str, Any]:
    record = data.pyphysio_medical(RATE_HZ)
    beats = record.r_peaks_s
    ends, rates = beats[1:], 60.0 / np.diff(beats)

    def hr_ref(start: float, end: float) -> float:
        inside = (ends >= start) & (ends < end)
        return float(rates[inside].mean()) if inside.sum() >= 3 else math.nan

    def rmssd_ref(start: float, end: float) -> float:
        inside = beats[(beats >= start) & (beats <= end)]
        return float(np.sqrt(np.mean(np.diff(np.diff(inside) * 1000.0) ** 2)))

    x = record.ppg
    t = np.arange(x.size) / RATE_HZ
    artefact, _moving, accel = motion_injection(x.size, float(np.std(x)))
    plot: dict[str, Any] = {}
    for scenario, signal_, acc in (("clean", x, None), ("motion", x + artefact, accel)):
        runs = {
            "ours": stream(t, signal_, UNGATED, accel=acc),
            "ours_gated": stream(t, signal_, GATED, accel=acc),
        }
        if scenario == "clean":
            runs["ours_gated_reanalyse"] = stream(t, signal_, REANALYSE, accel=acc)
        if scenario == "motion":
            runs["ours_no_accelerometer"] = stream(t, signal_, UNGATED)
            runs["ours_gated_no_accelerometer"] = stream(t, signal_, GATED)
        names = ("heartpy", "nk_elgendi", "nk_msptd", "nk_elgendi_sqi_gated")
        hr = evaluate_hr(signal_, runs, hr_ref, baseline_names=names)
        evaluate_rmssd(signal_, runs, rmssd_ref, names)
        f1 = whole_record_f1(signal_, beats)
        results[f"pyphysio_finger_ppg_30hz_{scenario}"] = {
            "reference": {
                "source": "pyphysio 4.10 test_data/medical.txt.bz2 (ECG R waves, respiration belt)",
                "beats": int(beats.size),
                "hr_bpm": round(float(np.mean(rates)), 2),
                "rmssd_ms": round(rmssd_ref(0, 1e9), 2),
                "belt_breathing_bpm": round(record.breathing_bpm, 2),
                "belt_breaths": int(record.breath_times_s.size),
            },
            "methods": merge(hr, RMSSD_RESULTS.pop(), f1),
            "breathing": evaluate_breathing(signal_, runs["ours_gated"], record.belt_rate_bpm),
        }
        plot[scenario] = {
            "t": t,
            "runs": runs,
            "ref_t": ends,
            "ref_hr": rates,
        }
    return plot


def vitaldsp_scenario(results: dict[str, Any]) -> None:
    record = data.vitaldsp_oximeter(RATE_HZ)
    device = record.device_hr

    def hr_ref(start: float, end: float) -> float:
        seconds = device[int(start) : int(end)]
        return float(np.median(seconds)) if seconds.size and np.isfinite(seconds).all() else math.nan

    x = record.ppg
    t = np.arange(x.size) / RATE_HZ
    runs = {"ours": stream(t, x, UNGATED), "ours_gated": stream(t, x, GATED)}
    hr = evaluate_hr(x, runs, hr_ref)
    results["vitaldsp_oximeter_30hz_vs_device_hr"] = {
        "reference": {
            "source": "vitalDSP 0.2.5 notebooks/ppg.csv; device HR (weak reference)",
            "valid_device_seconds": int(np.isfinite(device).sum()),
        },
        "methods": hr,
    }


def synthetic_scenarios(results: dict[str, Any]) -> None:
    duration = 200.0
    truth_beats = synthetic.beat_times(duration, hr_bpm=72.0, breathing_bpm=15.0)
    truth = synthetic.Truth(truth_beats, 15.0)
    t = synthetic.frame_times(duration, jitter=0.1)
    pulse = synthetic.pulse_at(t, truth_beats)
    rng = np.random.default_rng(7)
    pulse = pulse + rng.normal(0.0, 0.02, pulse.size)
    moving = synthetic.motion_bursts(t, 0.2)
    accel = synthetic.accelerometer(t, moving)
    with_motion = pulse + 2.0 * float(np.std(pulse)) * synthetic.band_noise(t) * moving
    for scenario, values, acc in (("clean", pulse, None), ("motion", with_motion, accel)):
        runs = {
            "ours": stream(t, values, UNGATED, accel=acc),
            "ours_gated": stream(t, values, GATED, accel=acc),
        }
        _, uniform, _ = uniform_grid(t, values[:, None], 0.0, float(t[-1]), RATE_HZ)
        uniform = uniform[:, 0]
        names = ("heartpy", "nk_elgendi", "nk_msptd", "nk_elgendi_sqi_gated")
        hr = evaluate_hr(uniform, runs, truth.hr_bpm, baseline_names=names)
        evaluate_rmssd(uniform, runs, truth.rmssd_ms, names)
        f1 = whole_record_f1(uniform, truth_beats[truth_beats < t[-1]])
        results[f"synthetic_ppg_30fps_jittered_{scenario}"] = {
            "reference": {
                "source": "bench/biometrics/synthetic.py (known beats, 15 breaths/min)",
                "hr_bpm": round(truth.hr_bpm(0, duration), 2),
                "frame_jitter": "±10 %",
            },
            "methods": merge(hr, RMSSD_RESULTS.pop(), f1),
            "breathing": evaluate_breathing(uniform, runs["ours_gated"], lambda _s, _e: 15.0),
        }
    # Face video (ours only: the baselines take no RGB): POS and CHROM, still and with head motion.
    face: dict[str, Any] = {}
    clean_pulse = synthetic.pulse_at(t, truth_beats)
    for motion_name, motion in (("still", None), ("head_motion", synthetic.band_noise(t, low=0.8, high=2.5))):
        rgb = synthetic.face_rgb(t, clean_pulse, motion=motion)
        for method in ("pos", "chrom"):
            cfg = StreamConfig(camera_region="face", face_method=method, quality_threshold=0.0)
            run = stream(t, rgb, cfg, rgb=True)
            errors = [
                r.bpm - truth.hr_bpm(r.t - 10, r.t) for r in run.hr if r.bpm is not None and r.window_s >= 10
            ]
            face[f"{method}_{motion_name}"] = summarise_hr(
                errors, sum(r.window_s >= 10 for r in run.hr), run.update_ms, run.update_cpu_ms
            )
    results["synthetic_face_rgb_30fps"] = {"methods": face}
    face_scenes(results)


FACE_METHODS = ("pos", "chrom", "green")


def face_scenes(results: dict[str, Any]) -> None:
    """Face RGB in a simulated room (``synthetic.face_scene``): three skin tones, still or with lamp
    flicker at 1.4 Hz (84 bpm, inside the pulse band) and/or head motion, POS vs CHROM vs GREEN.
    No real face RGB traces ship in any PyPI package (docs/biometrics.md lists what was searched)."""
    duration = 90.0
    beats = synthetic.beat_times(duration, hr_bpm=72.0)
    truth = synthetic.Truth(beats, 15.0)
    t = synthetic.frame_times(duration, jitter=0.1)
    pulse = synthetic.pulse_at(t, beats)
    motion = synthetic.band_noise(t, low=0.3, high=2.0, seed=3)
    conditions: dict[str, dict[str, Any]] = {
        "still": {},
        "flicker": {"flicker_hz": 1.4},
        "head_motion": {"motion": motion},
        "flicker_and_motion": {"flicker_hz": 1.4, "motion": motion},
    }
    table: dict[str, Any] = {}
    for skin in synthetic.SKIN_TONES:
        for condition, options in conditions.items():
            rgb = synthetic.face_scene(t, pulse, skin=skin, **options)
            row: dict[str, Any] = {}
            for method in FACE_METHODS:
                config = StreamConfig(camera_region="face", face_method=method, quality_threshold=0.0)  # type: ignore[arg-type]
                run = stream(t, rgb, config, rgb=True)
                full = [r for r in run.hr if r.window_s >= HR_WINDOW_S - 1e-6]
                scored = [
                    (r.quality, r.bpm - truth.hr_bpm(r.t - HR_WINDOW_S, r.t))
                    for r in full
                    if r.bpm is not None
                ]
                gated = [e for q, e in scored if q >= GATED.quality_threshold]
                row[method] = {
                    "hr_mae_bpm": round(float(np.mean(np.abs([e for _, e in scored]))), 2)
                    if scored
                    else None,
                    "gated_hr_mae_bpm": round(float(np.mean(np.abs(gated))), 2) if gated else None,
                    "gated_coverage": round(len(gated) / len(full), 3) if full else None,
                    "gated_within_3bpm": round(float(np.mean(np.abs(gated) <= 3.0)), 3) if gated else None,
                }
            table[f"{skin}_{condition}"] = row
    results["synthetic_face_scenes_30fps"] = {
        "source": "bench/biometrics/synthetic.py face_scene: 72 bpm, 90 s, ±10 % frame jitter",
        "rows": table,
    }


def heartpy_agreement(results: dict[str, Any]) -> None:
    """No reference here: how close our whole-record numbers come to HeartPy's documented ones."""
    from resonance_worker.domain.biometrics import hrv

    rows = {}
    for recording in data.heartpy_recordings():
        times = np.arange(recording.ppg.size) / recording.rate_hz
        _, uniform, _ = uniform_grid(times, recording.ppg[:, None], 0.0, float(times[-1]), RATE_HZ)
        beats = detect_beats(uniform[:, 0], RATE_HZ, 0.0)
        ok = ~(beats.morphology < 0.8)
        intervals = hrv.select_intervals(beats.times, ok)
        rows[recording.name] = {
            "documented_heartpy": recording.documented,
            "ours_30hz": {
                "bpm": round(60.0 / float(np.mean(intervals.clean_seconds)), 2),
                "rmssd": round(hrv.rmssd_ms(hrv.successive_differences_ms(intervals)) or math.nan, 2),
                "sdnn": round(hrv.sdnn_ms(intervals.clean_seconds * 1000.0) or math.nan, 2),
                "clean_share": round(intervals.clean_span() / float(times[-1]), 3),
            },
        }
    results["heartpy_bundled_agreement"] = rows


def hrv_golden(results: dict[str, Any]) -> None:
    from resonance_worker.domain.biometrics import hrv

    nn, report = data.pyhrv_sample()
    diffs = np.diff(nn)
    results["hrv_formulas_vs_pyhrv_report"] = {
        "expected": report,
        "ours": {
            "rmssd": round(hrv.rmssd_ms(diffs) or math.nan, 3),
            "sdnn": round(hrv.sdnn_ms(nn) or math.nan, 3),
            "pnn50": round(hrv.pnn50_pct(diffs) or math.nan, 3),
            "mean_nn": round(float(np.mean(nn)), 3),
        },
    }


def percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 3)


def compute_cost(results: dict[str, Any]) -> None:
    """Cost per update per stream, the settled-beat path (default) beside the re-analysing one.

    The two paths run alternately, three times each, on the same recordings in 1 s batches, so
    both see the same machine load. An update is "heavy" when an HRV or breathing reading fell
    due in it (every 5 s from 32 s on; the re-analysing path re-detects 60–120 s there)."""
    import os

    record = data.pyphysio_medical(RATE_HZ)
    ppg = np.concatenate([record.ppg] * 3)  # 6 minutes: every window length reached many times
    ppg_t = np.arange(ppg.size) / RATE_HZ
    duration = 200.0
    beats = synthetic.beat_times(duration, hr_bpm=72.0)
    face_t = synthetic.frame_times(duration, jitter=0.1)
    face = synthetic.face_rgb(face_t, synthetic.pulse_at(face_t, beats))
    cases = {
        "pyphysio_ppg_6min": (ppg_t, ppg, {}),
        "synthetic_face_pos": (face_t, face, {"camera_region": "face", "face_method": "pos"}),
        "synthetic_face_chrom": (face_t, face, {"camera_region": "face", "face_method": "chrom"}),
    }
    load_before = os.getloadavg()[0]
    out: dict[str, Any] = {}
    for case, (times, values, options) in cases.items():
        samples: dict[str, dict[str, list[float]]] = {}
        for _ in range(3):
            for path, reanalyse in (("reanalyse_old", True), ("settled_beats_new", False)):
                config = StreamConfig(reanalyse_long_windows=reanalyse, **options)  # type: ignore[arg-type]
                run = stream(times, values, config, rgb=values.ndim == 2)
                heavy = heavy_updates(times, run)
                entry = samples.setdefault(path, {"cpu": [], "wall": [], "heavy_cpu": [], "heavy_wall": []})
                entry["cpu"] += run.update_cpu_ms
                entry["wall"] += run.update_ms
                entry["heavy_cpu"] += [c for c, h in zip(run.update_cpu_ms, heavy, strict=True) if h]
                entry["heavy_wall"] += [w for w, h in zip(run.update_ms, heavy, strict=True) if h]
        out[case] = {
            path: {
                "updates": len(entry["cpu"]),
                "p50_cpu_ms": percentile(entry["cpu"], 50),
                "p95_cpu_ms": percentile(entry["cpu"], 95),
                "p50_wall_ms": percentile(entry["wall"], 50),
                "p95_wall_ms": percentile(entry["wall"], 95),
                "max_wall_ms": percentile(entry["wall"], 100),
                "heavy_p95_cpu_ms": percentile(entry["heavy_cpu"], 95),
                "heavy_p95_wall_ms": percentile(entry["heavy_wall"], 95),
            }
            for path, entry in samples.items()
        }
        old, new = out[case]["reanalyse_old"], out[case]["settled_beats_new"]
        out[case]["p95_cpu_ratio_new_over_old"] = round(new["p95_cpu_ms"] / old["p95_cpu_ms"], 3)
        out[case]["p95_wall_ratio_new_over_old"] = round(new["p95_wall_ms"] / old["p95_wall_ms"], 3)
    out["load_average_1min"] = {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)}
    out["cpu_count"] = os.cpu_count()
    results["compute_per_update"] = out


def heavy_updates(times: FloatArray, run: StreamRun) -> list[bool]:
    """Per 1 s batch: did an HRV or breathing reading fall due in it."""
    seconds = np.floor(times).astype(int)
    batch_ends = times[np.append(np.flatnonzero(np.diff(seconds)), times.size - 1)]
    due = {r.t for r in run.hrv} | {r.t for r in run.breathing}
    return [float(end) in due for end in batch_ends]


def verdict(results: dict[str, Any]) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    for scenario in ("clean", "motion"):
        methods = results[f"pyphysio_finger_ppg_30hz_{scenario}"]["methods"]
        best = min(("heartpy", "nk_elgendi", "nk_msptd"), key=lambda m: methods[m]["hr_mae_bpm"] or 1e9)
        ours = methods["ours"]
        checks[f"hr_{scenario}_ungated"] = {
            "ours_mae": ours["hr_mae_bpm"],
            "ours_coverage": ours["coverage"],
            "best_baseline": best,
            "best_mae": methods[best]["hr_mae_bpm"],
            "best_coverage": methods[best]["coverage"],
            "met": ours["hr_mae_bpm"] <= methods[best]["hr_mae_bpm"]
            and ours["coverage"] >= methods[best]["coverage"],
        }
        gated, nk_gated = methods["ours_gated"], methods["nk_elgendi_sqi_gated"]
        # Same coverage as NK2's SQI gate: our windows ranked by our quality index, best first.
        ranked = methods["ours"]["_ranked"]
        matched = ranked[: max(1, round(nk_gated["coverage"] * methods["ours"]["windows"]))]
        matched_mae = round(float(np.mean([abs(e) for _, e in matched])), 3)
        checks[f"hr_{scenario}_gated"] = {
            "ours_mae": gated["hr_mae_bpm"],
            "ours_coverage": gated["coverage"],
            "nk_sqi_mae": nk_gated["hr_mae_bpm"],
            "nk_sqi_coverage": nk_gated["coverage"],
            "ours_mae_at_nk_sqi_coverage": matched_mae,
            "met": matched_mae <= (nk_gated["hr_mae_bpm"] or 1e9),
        }
    clean = results["pyphysio_finger_ppg_30hz_clean"]["methods"]["ours_gated"]
    checks["rmssd_gated_within_10ms"] = {
        "error_ms": clean["rmssd_error_ms"],
        "coverage": clean["rmssd_coverage"],
        "met": clean["rmssd_error_ms"] is not None and clean["rmssd_error_ms"] <= 10.0,
    }
    ours_entries = [
        entry
        for key, value in results.items()
        if key.startswith(("pyphysio", "synthetic_ppg"))
        for name, entry in value["methods"].items()
        if name.startswith("ours") and "reanalyse" not in name  # the old path is reported on its own
    ]
    # The box is shared (load 5–10 on 2 cores while other work runs): wall time includes waiting
    # for a CPU. Both are reported; the bar is met when both p95s are within 20 ms.
    worst_cpu = max(entry["p95_update_cpu_ms"] for entry in ours_entries)
    worst_wall = max(entry["p95_update_ms"] for entry in ours_entries)
    compute = results["compute_per_update"]
    cases = [value for value in compute.values() if isinstance(value, dict) and "settled_beats_new" in value]
    new_cpu = max(case["settled_beats_new"]["p95_cpu_ms"] for case in cases)
    new_wall = max(case["settled_beats_new"]["p95_wall_ms"] for case in cases)
    checks["p95_update_ms_at_most_20"] = {
        "worst_p95_cpu_ms": max(worst_cpu, new_cpu),
        "worst_p95_wall_ms": max(worst_wall, new_wall),
        "old_path_worst_p95_cpu_ms": max(case["reanalyse_old"]["p95_cpu_ms"] for case in cases),
        "old_path_worst_p95_wall_ms": max(case["reanalyse_old"]["p95_wall_ms"] for case in cases),
        "load_average_1min": compute["load_average_1min"],
        "met_cpu": max(worst_cpu, new_cpu) <= 20.0,
        "met_wall": max(worst_wall, new_wall) <= 20.0,
        "met": max(worst_cpu, new_cpu) <= 20.0 and max(worst_wall, new_wall) <= 20.0,
    }
    return checks


def draw(plot: dict[str, Any], results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 8))
    for ax, scenario in zip(axes[0], ("clean", "motion"), strict=True):
        p = plot[scenario]
        ax.plot(p["ref_t"], p["ref_hr"], color="0.6", lw=1, label="ECG beat-to-beat")
        for name, style in (("ours", "C0-"), ("ours_gated", "C3o")):
            readings = [(r.t, r.bpm) for r in p["runs"][name].hr if r.bpm is not None]
            if readings:
                tt, bb = zip(*readings, strict=True)
                ax.plot(tt, bb, style, ms=3, lw=1, label=name)
        ax.set_title(f"pyphysio finger PPG at 30 Hz, {scenario}")
        ax.set_xlabel("s")
        ax.set_ylabel("bpm")
        ax.legend(fontsize=8)
    for ax, scenario in zip(axes[1], ("clean", "motion"), strict=True):
        methods = results[f"pyphysio_finger_ppg_30hz_{scenario}"]["methods"]
        names = list(methods)
        maes = [methods[n]["hr_mae_bpm"] or 0 for n in names]
        cover = [methods[n]["coverage"] or 0 for n in names]
        bars = ax.bar(range(len(names)), maes, color=["C0" if n.startswith("ours") else "C7" for n in names])
        for bar, c in zip(bars, cover, strict=True):
            ax.text(
                bar.get_x() + bar.get_width() / 2,
                bar.get_height(),
                f"{c:.0%}",
                ha="center",
                va="bottom",
                fontsize=7,
            )
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=7)
        ax.set_ylabel("HR MAE, bpm (label: coverage)")
        ax.set_title(f"same 10 s windows, {scenario}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    started = time.perf_counter()
    results: dict[str, Any] = {}
    hrv_golden(results)
    plot = pyphysio_scenarios(results)
    synthetic_scenarios(results)
    vitaldsp_scenario(results)
    heartpy_agreement(results)
    compute_cost(results)
    results["bar"] = verdict(results)
    for value in results.values():
        for entry in value.get("methods", {}).values() if isinstance(value, dict) else ():
            entry.pop("_ranked", None)
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "biometrics.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
    draw(plot, results, RESULTS / "biometrics.png")
    for dataset, value in results.items():
        if isinstance(value, dict) and "methods" in value:
            print(f"\n{dataset}")
            for name, entry in value["methods"].items():
                print(f"  {name:30s} " + " ".join(f"{k}={v}" for k, v in entry.items() if k != "windows"))
    print("\nbar:", json.dumps(results["bar"], indent=1))
    print(f"wrote {RESULTS / 'biometrics.json'} in {results['elapsed_s']} s")


if __name__ == "__main__":
    main()
