"""Cost of one biometric update as the worker runs it, beside the bare streaming core.

Run: ``.venv/bin/python -m bench.living.bio_update [--seconds 180]``; writes
``bench/results/living_bio.json``.

Both sides get the same one-second 30 Hz PPG batches of a synthetic recording with known
heart rate. The **baseline** calls ``BiometricStream.push_ppg`` with numpy arrays; **ours** is
the ``bio.push`` path without the network: the JSON lists validated and converted
(``living.biometrics.parse_batch``), the stream pushed (``push``, what runs in the worker's
thread pool) and the readings turned into the dicts that are published (``Living.use_readings``).
Thread CPU time per update is what the 20 ms budget is about; wall time is printed too (the
machine is shared, so wall time includes waiting for a core).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from resonance_worker.domain.biometrics import BiometricStream
from resonance_worker.living.biometrics import parse_batch, push

from bench.biometrics import synthetic

RESULTS = Path(__file__).resolve().parent.parent / "results"


def batches(seconds: int, hr_bpm: float = 72.0) -> list[dict[str, Any]]:
    beats = synthetic.beat_times(seconds + 2, hr_bpm=hr_bpm)
    t = synthetic.frame_times(seconds, jitter=0.1)
    values = synthetic.pulse_at(t, beats)
    out = []
    for second in range(seconds):
        inside = (t >= second) & (t < second + 1)
        out.append({"kind": "ppg", "t": t[inside].tolist(), "values": values[inside].tolist()})
    return out


def summary(cpu: list[float], wall: list[float]) -> dict[str, float]:
    def ms(values: list[float], q: float) -> float:
        return round(float(np.percentile(values, q)) * 1000, 3)

    return {
        "updates": len(cpu),
        "cpu_p50_ms": ms(cpu, 50),
        "cpu_p95_ms": ms(cpu, 95),
        "cpu_max_ms": ms(cpu, 100),
        "wall_p50_ms": ms(wall, 50),
        "wall_p95_ms": ms(wall, 95),
    }


def run(seconds: int) -> dict[str, Any]:
    """Both sides batch by batch, alternating, so warm-up and machine load fall on both alike."""
    work = batches(seconds)
    core, stream = BiometricStream(), BiometricStream()
    sides: dict[str, Callable[[dict[str, Any]], object]] = {
        "baseline_core": lambda b: core.push_ppg(np.asarray(b["t"]), np.asarray(b["values"])),
        "worker_bio_push": lambda b: [r.to_dict() for r in push(stream, parse_batch(b)).readings],
    }
    timings: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in sides}
    for batch in work:
        for name, step in sides.items():
            c0, w0 = time.thread_time(), time.perf_counter()
            step(batch)
            timings[name][0].append(time.thread_time() - c0)
            timings[name][1].append(time.perf_counter() - w0)
    baseline = summary(*timings["baseline_core"])
    ours = summary(*timings["worker_bio_push"])
    return {
        "seconds": seconds,
        "batch": "1 s of 30 Hz PPG",
        "baseline_core": baseline,
        "worker_bio_push": ours,
        "ratio_cpu_p95": round(ours["cpu_p95_ms"] / baseline["cpu_p95_ms"], 3)
        if baseline["cpu_p95_ms"]
        else None,
        "budget_p95_ms": 20.0,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=180)
    parser.add_argument("--out", type=Path, default=RESULTS / "living_bio.json")
    args = parser.parse_args(argv)
    result = run(args.seconds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    base, ours = result["baseline_core"], result["worker_bio_push"]
    print(f"{'':18}{'cpu p50':>10}{'cpu p95':>10}{'cpu max':>10}{'wall p95':>10}  (ms per update)")
    for name, row in (("core (baseline)", base), ("worker bio.push", ours)):
        print(
            f"{name:18}{row['cpu_p50_ms']:>10}{row['cpu_p95_ms']:>10}{row['cpu_max_ms']:>10}{row['wall_p95_ms']:>10}"
        )
    print(
        f"ratio cpu p95 (worker / core): {result['ratio_cpu_p95']}; budget p95 {result['budget_p95_ms']} ms"
    )
    return result


if __name__ == "__main__":
    main()
