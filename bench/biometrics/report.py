"""Markdown tables of a benchmark result, for docs/biometrics.md.

Run: ``.venv/bin/python -m bench.biometrics.report`` (reads ``bench/results/biometrics.json``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.biometrics.run import RESULTS

TITLES = {
    "pyphysio_finger_ppg_30hz_clean": "pyphysio finger PPG vs ECG, 30 Hz, clean",
    "pyphysio_finger_ppg_30hz_motion": "pyphysio finger PPG vs ECG, 30 Hz, injected motion",
    "synthetic_ppg_30fps_jittered_clean": "synthetic PPG, 30 fps ±10 % jitter, clean",
    "synthetic_ppg_30fps_jittered_motion": "synthetic PPG, 30 fps ±10 % jitter, injected motion",
    "vitaldsp_oximeter_30hz_vs_device_hr": "vitalDSP oximeter PPG vs the device's HR (weak reference), 30 Hz",
}


def cell(value: Any, kind: str = "") -> str:
    if value is None:
        return "–"
    if kind == "%":
        return f"{value:.0%}"
    if kind == "3":
        return f"{value:.3f}"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def methods_table(methods: dict[str, dict[str, Any]]) -> str:
    header = [
        "method",
        "HR MAE bpm",
        "within ±5 bpm",
        "HR coverage",
        "beat F1",
        "RMSSD error ms",
        "RMSSD coverage",
        "p95 update CPU ms",
        "p95 update wall ms",
    ]
    rows = [
        [
            name,
            cell(m.get("hr_mae_bpm")),
            cell(m.get("hr_within_5bpm"), "%"),
            cell(m.get("coverage"), "%"),
            cell(m.get("beat_f1"), "3"),
            cell(m.get("rmssd_error_ms")),
            cell(m.get("rmssd_coverage"), "%"),
            cell(m.get("p95_update_cpu_ms")),
            cell(m.get("p95_update_ms")),
        ]
        for name, m in methods.items()
    ]
    return table(header, rows)


def breathing_table(breathing: dict[str, Any]) -> str:
    header = ["method", "windows", "coverage", "MAE /min", "max error /min", "within 3 /min"]
    rows = [
        [
            name,
            cell(m["windows"]),
            cell(m["coverage"], "%"),
            cell(m["mae_bpm"]),
            cell(m["max_error_bpm"]),
            cell(m["within_3bpm"], "%"),
        ]
        for name, m in breathing.items()
        if name != "ours_reasons"
    ]
    return (
        table(header, rows)
        + f"\n\nOur windows without a rate, by reason: `{json.dumps(breathing['ours_reasons'])}`"
    )


def compute_table(compute: dict[str, Any]) -> str:
    header = [
        "recording",
        "path",
        "updates",
        "p50 CPU",
        "p95 CPU",
        "p95 wall",
        "max wall",
        "p95 CPU, HRV/breathing updates",
    ]
    rows = []
    for case, paths in compute.items():
        if not isinstance(paths, dict) or "settled_beats_new" not in paths:
            continue
        for path in ("reanalyse_old", "settled_beats_new"):
            p = paths[path]
            rows.append(
                [
                    case,
                    path,
                    cell(p["updates"]),
                    cell(p["p50_cpu_ms"]),
                    cell(p["p95_cpu_ms"]),
                    cell(p["p95_wall_ms"]),
                    cell(p["max_wall_ms"]),
                    cell(p["heavy_p95_cpu_ms"]),
                ]
            )
    return table(header, rows) + (
        f"\n\nms per update per stream; load average (1 min) {json.dumps(compute['load_average_1min'])} "
        f"on {compute['cpu_count']} cores."
    )


def face_scenes_table(rows: dict[str, Any]) -> str:
    header = ["skin, condition"] + [f"{m} MAE (gated MAE @ coverage)" for m in ("pos", "chrom", "green")]
    out = []
    for name, methods in rows.items():
        out.append(
            [name.replace("_", " ", 1)]
            + [
                f"{cell(m['hr_mae_bpm'])} ({cell(m['gated_hr_mae_bpm'])} @ {cell(m['gated_coverage'], '%')})"
                for m in methods.values()
            ]
        )
    return table(header, out)


def render(results: dict[str, Any]) -> str:
    parts: list[str] = []
    for key, title in TITLES.items():
        value = results[key]
        parts.append(f"**{title}**\n\n{methods_table(value['methods'])}")
        if "breathing" in value:
            parts.append(
                f"Breathing rate, same windows as our gated stream:\n\n{breathing_table(value['breathing'])}"
            )
        if "reference" in value:
            parts.append(f"Reference: `{json.dumps(value['reference'])}`")
    face = results["synthetic_face_rgb_30fps"]["methods"]
    parts.append(
        "**Synthetic face RGB, plain (ours only; the baselines take no RGB)**\n\n"
        + table(
            ["method", "HR MAE bpm", "coverage", "p95 update CPU ms"],
            [
                [n, cell(m["hr_mae_bpm"]), cell(m["coverage"], "%"), cell(m["p95_update_cpu_ms"])]
                for n, m in face.items()
            ],
        )
    )
    parts.append(
        "**Synthetic face in a room** (`face_scene`, 72 bpm): ungated MAE, and the MAE @ coverage "
        "behind the 0.5 gate\n\n" + face_scenes_table(results["synthetic_face_scenes_30fps"]["rows"])
    )
    parts.append(
        "**Compute per update, old path beside new** (`compute_per_update`)\n\n"
        + compute_table(results["compute_per_update"])
    )
    rows = []
    for name, r in results["heartpy_bundled_agreement"].items():
        d, o = r["documented_heartpy"], r["ours_30hz"]
        rows.append(
            [
                name,
                cell(d["bpm"]),
                cell(o["bpm"]),
                cell(d["rmssd"]),
                cell(o["rmssd"]),
                cell(d["sdnn"]),
                cell(o["sdnn"]),
                cell(o["clean_share"], "3"),
            ]
        )
    parts.append(
        "**HeartPy bundled recordings (no reference; agreement with HeartPy's documented outputs)**\n\n"
        + table(
            [
                "recording",
                "HeartPy bpm",
                "ours bpm",
                "HeartPy RMSSD",
                "ours RMSSD",
                "HeartPy SDNN",
                "ours SDNN",
                "our clean share",
            ],
            rows,
        )
    )
    golden = results["hrv_formulas_vs_pyhrv_report"]
    parts.append(
        f"**HRV formulas vs pyhrv's sample report** (4 684 NN intervals): expected "
        f"`{json.dumps(golden['expected'])}`, ours `{json.dumps(golden['ours'])}`."
    )
    parts.append(
        "**The bar** (`bar` in the JSON):\n\n```json\n" + json.dumps(results["bar"], indent=1) + "\n```"
    )
    return "\n\n".join(parts) + "\n"


def main(path: Path = RESULTS / "biometrics.json") -> None:
    print(render(json.loads(path.read_text())))


if __name__ == "__main__":
    main()
