"""Cost of one resonance-room tick: the pair-by-pair definition beside the vectorised one.

Run: ``.venv/bin/python -m bench.living_rooms [--seconds 20]``; writes
``bench/results/living_rooms.json``.

For 10, 30 and 100 members, two :class:`RoomMonitor` s get the same input: two minutes of heart
rates (1 Hz, with jitter, each member a noisy sine at their own phase) and a self-reported state
every 3 s, most members repeating a shared valence curve a few seconds late (so leader-follower
has real work). Then, second by second, both are fed one more sample per member and ticked,
alternating which goes first, so machine load and warm-up fall on both alike. The **baseline**
is ``RoomMonitor(pairwise=True)`` (agreement, synchrony and leader-follower one pair at a time,
as before); **ours** is the default (all pairs at once). Thread CPU time per tick is reported
(the machine is shared; wall time is printed too), and every tick's results are checked equal.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
from resonance_worker.domain.resonance import (
    HeartRateSample,
    MemberState,
    ResonanceConfig,
    RoomMonitor,
    RoomTick,
)

RESULTS = Path(__file__).resolve().parent / "results"
SIZES = (10, 30, 100)
START = 10_000.0


class Room:
    """The synthetic input of one room, fed to any number of monitors."""

    def __init__(self, members: int, seed: int) -> None:
        rng = random.Random(seed)
        self.rng = rng
        self.members = [f"m{i:03d}" for i in range(members)]
        self.base = {m: rng.uniform(60, 90) for m in self.members}
        self.phase = {m: rng.uniform(0, 2 * math.pi) for m in self.members}
        self.lag = {m: rng.randint(0, 6) for m in self.members}
        self.follows = {m: rng.random() < 0.7 for m in self.members}

    def heart_rate(self, member: str, t: float) -> HeartRateSample:
        bpm = self.base[member] + 6 * math.sin(t / 11 + self.phase[member]) + self.rng.gauss(0, 1)
        return HeartRateSample(t + self.rng.uniform(-0.2, 0.2), bpm)

    def state(self, member: str, t: float) -> MemberState:
        follows = self.follows[member]
        valence = math.sin((t - self.lag[member]) / 9) if follows else self.rng.uniform(-1, 1)
        return MemberState(member, round(valence, 2), round(self.rng.uniform(0, 1), 2))

    def feed(self, monitors: list[RoomMonitor], t: float) -> None:
        for member in self.members:
            sample = self.heart_rate(member, t)
            for monitor in monitors:
                monitor.add_heart_rate(member, sample)
            if int(t) % 3 == 0:
                state = self.state(member, t)
                for monitor in monitors:
                    monitor.update_state(state, t)


def same(a: RoomTick, b: RoomTick) -> bool:
    """Equal results: the resonance parts to 1e-9, the same patterns with the same evidence."""

    def close(x: float | None, y: float | None) -> bool:
        return (x is None and y is None) or (x is not None and y is not None and abs(x - y) <= 1e-9)

    ra, rb = a.resonance, b.resonance
    parts = all(close(x, y) for x, y in ((ra.score, rb.score), (ra.agreement, rb.agreement)))
    parts = parts and close(ra.synchrony, rb.synchrony) and ra.synced_pairs == rb.synced_pairs
    patterns = [
        (p.kind, p.evidence.get("leader"), sorted(p.evidence.get("followers", {}))) for p in a.patterns
    ]
    others = [(p.kind, p.evidence.get("leader"), sorted(p.evidence.get("followers", {}))) for p in b.patterns]
    return parts and patterns == others and a.publish == b.publish


def measure(members: int, seconds: int, seed: int) -> dict[str, Any]:
    config = ResonanceConfig()
    room = Room(members, seed)
    baseline = RoomMonitor("bench", config, pairwise=True)
    ours = RoomMonitor("bench", config)
    for k in range(int(config.window_s)):  # a full window of history first
        room.feed([baseline, ours], START - config.window_s + k)
    cpu: dict[str, list[float]] = {"baseline": [], "ours": []}
    wall: dict[str, list[float]] = {"baseline": [], "ours": []}
    mismatches = 0
    patterns = 0
    for second in range(seconds):
        now = START + second
        room.feed([baseline, ours], now)
        order = [("baseline", baseline), ("ours", ours)]
        if second % 2:
            order.reverse()
        ticks: dict[str, RoomTick] = {}
        for name, monitor in order:
            started_cpu, started_wall = time.thread_time(), time.perf_counter()
            ticks[name] = monitor.tick(now)
            cpu[name].append(time.thread_time() - started_cpu)
            wall[name].append(time.perf_counter() - started_wall)
        mismatches += not same(ticks["baseline"], ticks["ours"])
        patterns += len(ticks["ours"].patterns)

    def ms(values: list[float], q: float) -> float:
        return round(float(np.percentile(values, q)) * 1000, 3)

    result: dict[str, Any] = {"members": members, "ticks": seconds, "mismatches": mismatches}
    for name in ("baseline", "ours"):
        result[name] = {
            "cpu_p50_ms": ms(cpu[name], 50),
            "cpu_p90_ms": ms(cpu[name], 90),
            "wall_p50_ms": ms(wall[name], 50),
        }
    result["speedup_cpu_p50"] = round(result["baseline"]["cpu_p50_ms"] / result["ours"]["cpu_p50_ms"], 1)
    result["new_patterns_seen"] = patterns
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=20, help="ticks measured per room size")
    parser.add_argument("--seed", type=int, default=20261125)
    parser.add_argument("--out", type=Path, default=RESULTS / "living_rooms.json")
    args = parser.parse_args()
    rows = [measure(members, args.seconds, args.seed) for members in SIZES]
    print(f"{'members':>7}  {'pairwise p50':>12}  {'vectorised p50':>14}  {'speed-up':>8}  mismatches")
    for row in rows:
        print(
            f"{row['members']:>7}  {row['baseline']['cpu_p50_ms']:>9.2f} ms  "
            f"{row['ours']['cpu_p50_ms']:>11.2f} ms  {row['speedup_cpu_p50']:>7.1f}x  {row['mismatches']}"
        )
    document = {
        "benchmark": "resonance room tick: pairwise definition (baseline) vs vectorised (ours)",
        "unit": "thread CPU milliseconds per tick",
        "machine": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "cpus": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
        },
        "window_s": ResonanceConfig().window_s,
        "rooms": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
